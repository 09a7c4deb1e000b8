/**
 * Scheduled maintenance (cron trigger). Each job is idempotent and bounded
 * per run, so a missed or doubled run does no harm.
 */
import { openDb } from './db/client'
import { deleteRemovedBlocks } from './db/repo'
import { pruneEventsBefore } from './db/seq'
import { deleteExpiredRefreshTokens } from './db/tokens'
import type { WorkerEnv } from './env'

/** Removed blocks stay this long so getRepo streams started before the removal finish. */
const REMOVED_BLOCK_RETENTION_MS = 60 * 60 * 1000
const MAX_BLOCKS_PER_RUN = 5000
/** Firehose events are kept this long for replay, like the reference PDS (72 h). */
const EVENT_RETENTION_MS = 72 * 60 * 60 * 1000
const MAX_EVENTS_PER_RUN = 5000

export const runMaintenance = async (env: WorkerEnv): Promise<void> => {
  const db = openDb(env.DB)
  const now = Date.now()
  const removed = await deleteRemovedBlocks(db, new Date(now - REMOVED_BLOCK_RETENTION_MS).toISOString(), MAX_BLOCKS_PER_RUN)
  const prunedEvents = await pruneEventsBefore(db, new Date(now - EVENT_RETENTION_MS).toISOString(), MAX_EVENTS_PER_RUN)
  await deleteExpiredRefreshTokens(db, new Date(now).toISOString())
  console.log(JSON.stringify({ job: 'maintenance', removedBlocks: removed, prunedEvents, d1: db.stats }))
}
