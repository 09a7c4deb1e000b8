/**
 * The Worker: wires the Hono app (CORS, per-request context and logging, XRPC
 * routes, well-known documents, one error handler) and exports the Durable
 * Object class and the cron handler. No logic lives here.
 */
import { Hono } from 'hono'
import { cors } from 'hono/cors'
import type { WorkerEnv } from './env'
import { FirehoseHub } from './firehose/hub'
import { runMaintenance } from './maintenance'
import { mountStatus } from './status/routes'
import type { AppEnv } from './xrpc/context'
import { toXrpcError, XrpcError } from './xrpc/errors'
import { mountWellKnown, registerIdentityMethods } from './xrpc/identity'
import { registerAccountMethods } from './xrpc/account'
import { registerEmailMethods } from './xrpc/email'
import { registerPreferenceMethods } from './xrpc/preferences'
import { proxyXrpc, registerProxiedMethods } from './xrpc/proxy'
import { registerRepoMethods } from './xrpc/repo'
import { XrpcRouter } from './xrpc/router'
import { requestContext } from './xrpc/middleware'
import { registerServerMethods } from './xrpc/server'
import { mountSubscribeRepos, registerSyncMethods } from './xrpc/sync'
import { VERSION } from './version'

const router = new XrpcRouter()
registerServerMethods(router)
registerRepoMethods(router)
registerSyncMethods(router)
registerIdentityMethods(router)
registerAccountMethods(router)
registerEmailMethods(router)
registerPreferenceMethods(router)
registerProxiedMethods(router)
router.setFallback(proxyXrpc)

const app = new Hono<AppEnv>()

// Browsers run atproto clients: allow any origin, as the reference PDS does.
app.use('*', cors({ origin: '*', maxAge: 86400, exposeHeaders: ['x-request-id'] }))

app.use('*', requestContext)

app.get('/xrpc/_health', async (c) => {
  await c.get('deps').db.orm.run('select 1' as never)
  return c.json({ version: VERSION })
})

mountSubscribeRepos(app)
router.mount(app)
mountWellKnown(app)

mountStatus(app)

// Crawlers may read the public API (as the reference PDS tells them); 429 means back off.
app.get('/robots.txt', (c) => c.text('# An atproto PDS: see https://atproto.com/ for the protocol and its firehose.\nUser-agent: *\nAllow: /\n'))

app.notFound((c) => c.json({ error: 'NotFound', message: 'Not Found' }, 404))

app.onError((err, c) => {
  const xrpcErr = toXrpcError(err)
  if (xrpcErr.status >= 500 && !(err instanceof XrpcError)) {
    // Logged for the operator with the request id; the client gets no internals.
    console.error(JSON.stringify({ requestId: c.get('requestId'), error: String((err as Error)?.stack ?? err) }))
  }
  c.header('x-request-id', c.get('requestId'))
  return c.json(xrpcErr.body, xrpcErr.status as 400)
})

export default {
  fetch: app.fetch,
  scheduled: async (_event: ScheduledController, env: WorkerEnv, ctx: ExecutionContext) => {
    ctx.waitUntil(runMaintenance(env))
  },
} satisfies ExportedHandler<WorkerEnv>

export { FirehoseHub }
