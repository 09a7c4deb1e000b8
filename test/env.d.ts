/**
 * Types for the in-runtime tests: the `cloudflare:test` module, vite's
 * `?raw` / `import.meta.glob` imports and the interop vector JSON files.
 * The bindings vitest.config.ts adds are deliberately not merged into
 * `Cloudflare.Env` (tsconfig shares this file with src/): tests read the
 * secrets through src/env.ts's `WorkerEnv`, the setup file casts for
 * `TEST_MIGRATIONS`.
 */
/// <reference types="@cloudflare/vitest-plugin/types" />
/// <reference types="vite/client" />

/** Interop vector JSON files; each test casts them to the shape it reads. */
declare module '@vectors/*.json' {
  const value: unknown
  export default value
}
