/**
 * Scheduled maintenance (cron trigger). Each job is idempotent and bounded
 * per run, so a missed or doubled run does no harm.
 */
import { openDb } from './db/client'
import { deleteRemovedBlocks } from './db/repo'
import { deleteExpiredRefreshTokens } from './db/tokens'
import type { WorkerEnv } from './env'

/** Removed blocks stay this long so getRepo streams started before the removal finish. */
const REMOVED_BLOCK_RETENTION_MS = 60 * 60 * 1000
const MAX_BLOCKS_PER_RUN = 5000

export const runMaintenance = async (env: WorkerEnv): Promise<void> => {
  const db = openDb(env.DB)
  const now = Date.now()
  const removed = await deleteRemovedBlocks(db, new Date(now - REMOVED_BLOCK_RETENTION_MS).toISOString(), MAX_BLOCKS_PER_RUN)
  await deleteExpiredRefreshTokens(db, new Date(now).toISOString())
  console.log(JSON.stringify({ job: 'maintenance', removedBlocks: removed, d1: db.stats }))
}
