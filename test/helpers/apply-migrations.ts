/**
 * Vitest setup file: applies the real D1 migrations (`migrations/*.sql`, read
 * in Node by vitest.config.ts into the `TEST_MIGRATIONS` binding) before each
 * test file, so tests run against the schema production gets.
 * `applyD1Migrations` records what it applied in `d1_migrations`, so running
 * it again for every file is cheap and idempotent.
 */
import { applyD1Migrations, type D1Migration } from 'cloudflare:test'
import { env } from 'cloudflare:workers'

const { DB, TEST_MIGRATIONS } = env as Env & { TEST_MIGRATIONS: D1Migration[] }
await applyD1Migrations(DB, TEST_MIGRATIONS)
