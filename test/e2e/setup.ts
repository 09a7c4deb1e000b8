/**
 * Preloaded by `bun test` (bunfig.toml): a generous default per-test timeout,
 * since every e2e file drives a real `wrangler dev` child process.
 */
import { setDefaultTimeout } from 'bun:test'

setDefaultTimeout(60_000)
