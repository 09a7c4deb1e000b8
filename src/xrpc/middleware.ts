/**
 * The per-request middleware: builds the handlers' `Deps` (typed config, a
 * counted D1 client, the repo context whose commits poke the firehose), runs
 * once-per-isolate background checks, and writes one structured log line per
 * request (method, path and NSID, status, duration, D1 round trips) for `wrangler tail`.
 * Tokens and bodies are never logged.
 */
import { createMiddleware } from 'hono/factory'
import { openDb } from '../db/client'
import { loadConfig, type Config, type WorkerEnv } from '../env'
import { announceHandleIfChanged, requestCrawlIfQuiet } from '../firehose/announce'
import { firehoseHub } from '../firehose/hub'
import type { AppEnv, Deps } from './context'
import { toXrpcError } from './errors'

let identityChecked = false

/** After a commit: deliver it on the firehose, and make sure some relay is listening. */
const afterCommit = (env: WorkerEnv, config: Config, waitUntil: (p: Promise<unknown>) => void) => (): void => {
  const hub = firehoseHub(env)
  waitUntil(hub.notify())
  waitUntil(
    requestCrawlIfQuiet({
      kv: env.CACHE,
      relays: config.relayHosts,
      hostname: config.hostname,
      subscribers: async () => (await hub.stats()).subscribers,
    }),
  )
}

/** Once per isolate, off the request path: a changed PDS_HANDLE is announced on the firehose. */
const checkIdentityOnce = (env: WorkerEnv, config: Config, waitUntil: (p: Promise<unknown>) => void): void => {
  if (identityChecked) return
  identityChecked = true
  waitUntil(
    announceHandleIfChanged(openDb(env.DB), config.did, config.handle)
      .then((announced) => (announced ? firehoseHub(env).notify() : undefined))
      .catch((err) => {
        identityChecked = false
        console.error(JSON.stringify({ job: 'announceHandle', error: String(err) }))
      }),
  )
}

export const requestContext = createMiddleware<AppEnv>(async (c, next) => {
  const started = Date.now()
  const requestId = crypto.randomUUID()
  c.set('requestId', requestId)
  const db = openDb(c.env.DB)
  // Set when this middleware itself throws (a broken setting): the error handler answers after we log.
  let failedStatus: number | undefined
  try {
    const config = await loadConfig(c.env)
    const waitUntil = (p: Promise<unknown>): void => c.executionCtx.waitUntil(p)
    const deps: Deps = {
      config,
      db,
      env: c.env,
      repo: {
        db,
        did: config.did,
        handle: config.handle,
        signingKey: config.signingKey,
        onCommit: afterCommit(c.env, config, waitUntil),
      },
      waitUntil,
    }
    c.set('deps', deps)
    checkIdentityOnce(c.env, config, waitUntil)
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
        ms: Date.now() - started,
        d1: db.stats,
        did: c.get('authDid'),
      }),
    )
  }
})
