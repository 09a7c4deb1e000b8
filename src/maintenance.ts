/**
 * Scheduled maintenance (cron trigger). Each job is idempotent and bounded
 * per run, so a missed or doubled run does no harm.
 */
import { deleteCollectableBlobs } from './db/blobs'
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

/** R2 deletes up to 1000 keys per call. */
const MAX_BLOBS_PER_RUN = 1000
/** An uploaded blob no record references is kept this long (a post being composed), then collected. */
const DEFAULT_BLOB_TEMP_TTL_S = 6 * 60 * 60

const blobTempTtlMs = (env: WorkerEnv): number => {
  const seconds = Number(env.PDS_BLOB_TEMP_TTL_SECONDS)
  return (Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_BLOB_TEMP_TTL_S) * 1000
}

export const runMaintenance = async (env: WorkerEnv): Promise<void> => {
  const db = openDb(env.DB)
  const now = Date.now()
  const removed = await deleteRemovedBlocks(db, new Date(now - REMOVED_BLOCK_RETENTION_MS).toISOString(), MAX_BLOCKS_PER_RUN)
  // Index rows first (re-checked against references in the DELETE), then the bytes.
  const blobKeys = await deleteCollectableBlobs(db, {
    tempBefore: new Date(now - blobTempTtlMs(env)).toISOString(),
    limit: MAX_BLOBS_PER_RUN,
  })
  if (blobKeys.length > 0) await env.BLOBS.delete(blobKeys)
  const prunedEvents = await pruneEventsBefore(db, new Date(now - EVENT_RETENTION_MS).toISOString(), MAX_EVENTS_PER_RUN)
  await deleteExpiredRefreshTokens(db, new Date(now).toISOString())
  console.log(JSON.stringify({ job: 'maintenance', removedBlocks: removed, deletedBlobs: blobKeys.length, prunedEvents, d1: db.stats }))
}
