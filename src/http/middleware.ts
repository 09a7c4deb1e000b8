/**
 * The per-request middleware: builds the handlers' `Deps` (typed config, a
 * counted D1 client, the repo context whose commits poke the firehose, the
 * stores over R2 and KV, the account row on demand), runs the once-per-isolate
 * start-up work, and writes one structured log line per request (method, path
 * and NSID, status, duration, D1 round trips) for `wrangler tail`. Tokens and
 * bodies are never logged.
 */
import { createMiddleware } from 'hono/factory'
import { bootstrapAccount } from '../account/bootstrap'
import { BlobStore } from '../blobs/store'
import { KvCache } from '../cache/kv-cache'
import { getAccount, type AccountRow } from '../db/account-row'
import { openDb, type Db } from '../db/client'
import { emailSender } from '../email/account-email'
import { loadConfig, type Config } from '../env'
import { requestCrawlIfQuiet } from '../firehose/announce'
import type { CommittedEvent } from '../firehose/events'
import { firehoseHub, type FirehoseHub } from '../firehose/hub'
import type { AppEnv, Deps } from './context'
import { toXrpcError } from './errors'

type WaitUntil = (p: Promise<unknown>) => void

/** After a commit: hand its events to the firehose, and make sure some relay is listening. */
const afterCommit = (hub: () => DurableObjectStub<FirehoseHub>, cache: KvCache, config: Config, waitUntil: WaitUntil) => (events: CommittedEvent[] | null): void => {
  waitUntil(hub().notify(events ?? undefined))
  waitUntil(
    requestCrawlIfQuiet({
      cache,
      relays: config.relayHosts,
      hostname: config.hostname,
      subscribers: async () => (await hub().stats()).subscribers,
    }),
  )
}

let started = false

/**
 * Once per isolate, before the first request is served: the account row and,
 * for a fresh identity, its genesis commit (src/account/bootstrap.ts).
 */
const startOnce = async (deps: Deps): Promise<void> => {
  if (started) return
  await bootstrapAccount(deps.repo, deps.config, deps.cache)
  started = true
}

/** The account row, read at most once per request (status and handle must be current). */
const accountLoader = (db: Db): (() => Promise<AccountRow>) => {
  let loaded: Promise<AccountRow> | null = null
  return () =>
    (loaded ??= getAccount(db).then((row) => {
      if (!row) throw new Error('the account row is missing')
      return row
    }))
}

export const requestContext = createMiddleware<AppEnv>(async (c, next) => {
  const startedAt = Date.now()
  const requestId = crypto.randomUUID()
  c.set('requestId', requestId)
  const db = openDb(c.env.DB)
  // Set when this middleware itself throws (a broken setting): the error handler answers after we log.
  let failedStatus: number | undefined
  try {
    const config = await loadConfig(c.env)
    const waitUntil: WaitUntil = (p) => c.executionCtx.waitUntil(p)
    const cache = new KvCache(c.env.CACHE)
    // Most requests never reach the firehose: its stub is made on first use.
    let hub: DurableObjectStub<FirehoseHub> | undefined
    const firehose = () => (hub ??= firehoseHub(c.env))
    const deps: Deps = {
      config,
      db,
      repo: {
        db,
        did: config.did,
        handle: config.handle,
        signingKey: config.signingKey,
        onCommit: afterCommit(firehose, cache, config, waitUntil),
      },
      account: accountLoader(db),
      blobs: new BlobStore(c.env.BLOBS, db, waitUntil),
      cache,
      get firehose() {
        return firehose()
      },
      loginLimiter: c.env.LOGIN_LIMITER,
      email: emailSender(c.env, config),
      waitUntil,
    }
    c.set('deps', deps)
    await startOnce(deps)
    await next()
  } catch (err) {
    failedStatus = toXrpcError(err).status
    throw err
  } finally {
    c.header('x-request-id', requestId)
    const path = new URL(c.req.url).pathname
    console.log(
      JSON.stringify({
        requestId,
        method: c.req.method,
        path,
        ...(path.startsWith('/xrpc/') ? { nsid: path.slice('/xrpc/'.length) } : {}),
        status: failedStatus ?? c.res.status,
        ms: Date.now() - startedAt,
        d1: db.stats,
        did: c.get('authDid'),
      }),
    )
  }
})
