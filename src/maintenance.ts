/**
 * Scheduled maintenance (the hourly cron trigger). Every job is idempotent
 * (it deletes only what is already due, re-checked in the DELETE itself) and
 * bounded per run (a backlog is worked off over the next runs), so a missed,
 * doubled or overlapping run does no harm. One job failing does not stop the
 * others. The run's outcome is kept in pds_state for the status page.
 */
import { KvCache } from './cache/kv-cache'
import { deleteCollectableBlobs } from './db/blobs'
import { openDb, type Db } from './db/client'
import { deleteDueRemovedBlocks, deleteExpiredRefreshTokensBounded } from './db/maintenance'
import { deleteExpiredOAuthState } from './db/oauth-account'
import { pruneEventsBefore } from './db/seq'
import { saveStateValue, STATE_MAINTENANCE, STATE_RELAY_CRAWL } from './db/status'
import { loadConfig, type WorkerEnv } from './env'
import { LAST_CRAWL_REQUEST_KEY, requestCrawl } from './firehose/crawl'
import { firehoseHub } from './firehose/hub'
import type { CrawlRequestReport, MaintenanceReport } from './status/data'

/** Removed blocks stay this long so getRepo streams started before the removal finish. */
const REMOVED_BLOCK_RETENTION_MS = 60 * 60 * 1000
const MAX_BLOCKS_PER_RUN = 5000
/** Firehose events are kept this long for replay, like the reference PDS (72 h). */
const EVENT_RETENTION_MS = 72 * 60 * 60 * 1000
const MAX_EVENTS_PER_RUN = 5000
const MAX_TOKENS_PER_RUN = 1000
/**
 * Expired OAuth rows per table and run. Each DPoP request leaves a one-time
 * `jti` row (kept ~3 minutes), so an hour of steady use can leave a few
 * thousand; the batch stays one round trip.
 */
const MAX_OAUTH_ROWS_PER_TABLE = 5000

/** R2 deletes up to 1000 keys per call. */
const MAX_BLOBS_PER_RUN = 1000
/** An uploaded blob no record references is kept this long (a post being composed), then collected. */
const DEFAULT_BLOB_TEMP_TTL_S = 6 * 60 * 60

/**
 * Relays are asked again when none is subscribed and no request was made in
 * this long. A little under the cron's hour, so an idle PDS is re-announced on
 * every run rather than every other one.
 */
const RECRAWL_INTERVAL_MS = 55 * 60 * 1000
/** The KV entry outlives the interval; the stored time is what is compared. */
const CRAWL_KEY_TTL_S = 2 * 60 * 60

const blobTempTtlMs = (env: WorkerEnv): number => {
  const seconds = Number(env.PDS_BLOB_TEMP_TTL_SECONDS)
  return (Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_BLOB_TEMP_TTL_S) * 1000
}

/**
 * Re-announces the PDS to its relays when none is connected: requestCrawl
 * after writes covers an active account, this covers an idle one (relays drop
 * a quiet host and do not come back by themselves).
 */
const reannounceIfIdle = async (env: WorkerEnv, db: Db, now: number): Promise<MaintenanceReport['crawl']> => {
  const config = await loadConfig(env)
  const cache = new KvCache(env.CACHE)
  if (config.relayHosts.length === 0) return 'no relays'
  if ((await firehoseHub(env).stats()).subscribers > 0) return 'relay connected'
  const last = Date.parse((await cache.getText(LAST_CRAWL_REQUEST_KEY)) ?? '')
  if (Number.isFinite(last) && now - last < RECRAWL_INTERVAL_MS) return 'recently requested'
  const at = new Date(now).toISOString()
  // Remembered before asking, so an overlapping run does not ask twice.
  await cache.put(LAST_CRAWL_REQUEST_KEY, at, CRAWL_KEY_TTL_S)
  const results = await requestCrawl(config.relayHosts, config.hostname)
  const report: CrawlRequestReport = { at, trigger: 'cron', results: results.map(({ relay, ok, status }) => ({ relay, ok, status })) }
  await saveStateValue(db, STATE_RELAY_CRAWL, JSON.stringify(report), at)
  return results.every((r) => r.ok) ? 'requested' : 'failed'
}

/** Runs `job`; a failure is logged and counted as nothing done, so the other jobs still run. */
const attempt = async <T>(name: string, job: () => Promise<T>, fallback: T): Promise<T> => {
  try {
    return await job()
  } catch (err) {
    console.error(JSON.stringify({ job: 'maintenance', step: name, error: String((err as Error)?.stack ?? err) }))
    return fallback
  }
}

export const runMaintenance = async (env: WorkerEnv): Promise<MaintenanceReport> => {
  const db = openDb(env.DB)
  const now = Date.now()
  const iso = (ms: number): string => new Date(ms).toISOString()
  const removedBlocks = await attempt('blocks', () => deleteDueRemovedBlocks(db, iso(now - REMOVED_BLOCK_RETENTION_MS), MAX_BLOCKS_PER_RUN), 0)
  const deletedBlobs = await attempt(
    'blobs',
    async () => {
      // Index rows first (re-checked against references in the DELETE), then the bytes.
      const keys = await deleteCollectableBlobs(db, { tempBefore: iso(now - blobTempTtlMs(env)), limit: MAX_BLOBS_PER_RUN })
      if (keys.length > 0) await env.BLOBS.delete(keys)
      return keys.length
    },
    0,
  )
  const prunedEvents = await attempt('events', () => pruneEventsBefore(db, iso(now - EVENT_RETENTION_MS), MAX_EVENTS_PER_RUN), 0)
  const expiredTokens = await attempt('tokens', () => deleteExpiredRefreshTokensBounded(db, iso(now), MAX_TOKENS_PER_RUN), 0)
  const expiredOAuth = await attempt('oauth', () => deleteExpiredOAuthState(db, iso(now), MAX_OAUTH_ROWS_PER_TABLE), 0)
  const crawl = await attempt('crawl', () => reannounceIfIdle(env, db, now), 'failed' as const)
  const report: MaintenanceReport = { at: iso(now), removedBlocks, deletedBlobs, prunedEvents, expiredTokens, expiredOAuth, crawl }
  await attempt('report', () => saveStateValue(db, STATE_MAINTENANCE, JSON.stringify(report), iso(now)), undefined)
  console.log(JSON.stringify({ job: 'maintenance', ...report, d1: db.stats }))
  return report
}
