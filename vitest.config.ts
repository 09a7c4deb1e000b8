/**
 * In-runtime test harness: every `test/**\/*.test.ts` runs inside workerd
 * through `@cloudflare/vitest-plugin`, with the bindings of `wrangler.toml`
 * (D1 `DB`, R2 `BLOBS`, KV `CACHE`, Durable Object `FIREHOSE`) and `main`
 * (`src/index.ts`) as the Worker under test.
 *
 * `test/e2e` holds `bun test` suites that spawn `wrangler dev`, and
 * `test/peers` holds Node-side reference peers: neither runs in workerd.
 *
 * The atproto interop vectors are vendored in `test/vectors/interop` (CC0,
 * see its SOURCE.txt); workerd has no filesystem, so tests import them
 * through vite (JSON imports, `?raw` text) via the `@vectors` alias.
 */
import { fileURLToPath } from 'node:url'
import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-plugin'
import { defineConfig } from 'vitest/config'

const fromRoot = (path: string): string => fileURLToPath(new URL(path, import.meta.url))

/**
 * Fixed test secrets, never used outside tests. The signing key is
 * sha256("edge-pds vitest signing key"), a valid secp256k1 scalar
 * (did:key:zQ3shTh8CQsTnQuhXRDYXZiEbCwMpVkAuHLf28pNu5bTTA9om).
 */
const testSecrets = {
  PDS_PASSWORD: 'test-password-for-vitest',
  JWT_SECRET: 'vitest-jwt-secret-0123456789abcdef0123456789abcdef',
  PDS_SIGNING_KEY: '15baefc074d274560b2316bc9e6f2d7503e2b33e319645f0de4178323b8a6179',
}

export default defineConfig({
  plugins: [
    cloudflareTest(async () => ({
      wrangler: { configPath: './wrangler.toml' },
      miniflare: {
        bindings: {
          ...testSecrets,
          // Read in Node (workerd cannot list files); applied by
          // test/helpers/apply-migrations.ts before each test file.
          TEST_MIGRATIONS: await readD1Migrations(fromRoot('./migrations')),
        },
      },
    })),
  ],
  resolve: {
    alias: { '@vectors': fromRoot('./test/vectors/interop') },
  },
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/e2e/**', 'test/peers/**', '**/node_modules/**'],
    setupFiles: ['./test/helpers/apply-migrations.ts'],
  },
})
