/** drizzle-kit config: `npm run db:generate` writes SQL migrations that `wrangler d1 migrations apply` runs. */
import { defineConfig } from 'drizzle-kit'

export default defineConfig({
  dialect: 'sqlite',
  schema: './drizzle/schema.ts',
  out: './migrations',
})
