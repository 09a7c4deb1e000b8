/**
 * The Worker: wires the Hono app (CORS, the per-request context and log, the
 * XRPC router, the other routes, the one error handler) and exports the
 * Durable Object class and the cron handler. No logic lives here.
 */
import { Hono } from 'hono'
import { cors } from 'hono/cors'
import type { WorkerEnv } from './env'
import { FirehoseHub } from './firehose/hub'
import type { AppEnv } from './http/context'
import { errorResponse } from './http/errors'
import { requestContext } from './http/middleware'
import { mountHttpRoutes } from './http/routes'
import { runMaintenance } from './maintenance'
import { registerAccountMethods } from './xrpc/account'
import { registerEmailMethods } from './xrpc/email'
import { registerIdentityMethods } from './xrpc/identity'
import { registerLifecycleMethods } from './xrpc/lifecycle'
import { registerPreferenceMethods } from './xrpc/preferences'
import { forwarding, registerProxiedMethods } from './xrpc/proxy'
import { registerRepoMethods } from './xrpc/repo'
import { XrpcRouter } from './xrpc/router'
import { registerServerMethods } from './xrpc/server'
import { registerSyncMethods } from './xrpc/sync'

const router = new XrpcRouter()
registerServerMethods(router)
registerRepoMethods(router)
registerSyncMethods(router)
registerIdentityMethods(router)
registerAccountMethods(router)
registerLifecycleMethods(router)
registerEmailMethods(router)
registerPreferenceMethods(router)
registerProxiedMethods(router)
router.setFallback(forwarding)

const app = new Hono<AppEnv>()

// Browsers run atproto clients: allow any origin, as the reference PDS does.
// OAuth clients in browsers must read the DPoP nonce and the auth challenge.
app.use('*', cors({ origin: '*', maxAge: 86400, exposeHeaders: ['x-request-id', 'DPoP-Nonce', 'WWW-Authenticate'] }))
app.use('*', requestContext)

mountHttpRoutes(app, router)
router.mount(app)

app.notFound((c) => c.json({ error: 'NotFound', message: 'Not Found' }, 404))
app.onError(errorResponse)

export default {
  fetch: app.fetch,
  scheduled: async (_event: ScheduledController, env: WorkerEnv, ctx: ExecutionContext) => {
    ctx.waitUntil(runMaintenance(env))
  },
} satisfies ExportedHandler<WorkerEnv>

export { FirehoseHub }
