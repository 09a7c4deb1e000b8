/**
 * Every route outside the XRPC router, in one place: the health check,
 * robots.txt, the well-known identity documents, the OAuth authorization
 * server (its endpoints and pages), the owner's account page, the status page and the firehose
 * WebSocket (subscriptions are not request/response XRPC calls).
 */
import type { Context, Hono } from 'hono'
import { XrpcError } from '../errors'
import { LAST_CRAWL_REQUEST_KEY } from '../firehose/crawl'
import { gatherStatus, type StatusReport } from '../status/data'
import { renderStatusPage } from '../status/page'
import { VERSION } from '../version'
import { mountAccountPage } from './account'
import { mountAuthorizePages } from './authorize'
import type { AppEnv } from './context'
import { mountOAuthEndpoints } from './oauth'
import { mountWellKnown } from './well-known'

const ROBOTS_TXT = '# An atproto PDS: see https://atproto.com/ for the protocol and its firehose.\nUser-agent: *\nAllow: /\n'

// Figures change with every write: never serve them from a cache.
const NO_STORE = { 'cache-control': 'no-store' }

const statusReport = (c: Context<AppEnv>): Promise<StatusReport> => {
  const deps = c.get('deps')
  return gatherStatus({
    db: deps.db,
    config: deps.config,
    account: deps.account,
    subscribers: async () => (await deps.firehose.stats()).subscribers,
    lastWriteCrawl: () => deps.cache.getText(LAST_CRAWL_REQUEST_KEY),
    waitUntil: deps.waitUntil,
  })
}

/** Where paths under /xrpc/ that are not lexicon calls are served (the XRPC router's one Hono route). */
export interface RawXrpcRoutes {
  raw(name: string, handler: (c: Context<AppEnv>) => Promise<Response>): void
}

export const mountHttpRoutes = (app: Hono<AppEnv>, xrpc: RawXrpcRoutes): void => {
  xrpc.raw('_health', async (c) => {
    await c.get('deps').db.orm.run('select 1' as never)
    return c.json({ version: VERSION })
  })

  // Crawlers may read the public API (as the reference PDS tells them); 429 means back off.
  app.get('/robots.txt', (c) => c.text(ROBOTS_TXT))

  mountWellKnown(app)
  mountOAuthEndpoints(app)
  mountAuthorizePages(app)
  mountAccountPage(app)

  /**
   * com.atproto.sync.subscribeRepos: the WebSocket is handed to the FirehoseHub
   * Durable Object, which holds it and replays/delivers from the event log.
   */
  xrpc.raw('com.atproto.sync.subscribeRepos', async (c) => {
    if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') {
      throw new XrpcError(426, 'This method is a WebSocket subscription: connect with Upgrade: websocket', 'UpgradeRequired')
    }
    return c.get('deps').firehose.fetch(c.req.raw)
  })

  app.get('/status.json', async (c) => c.json(await statusReport(c), 200, NO_STORE))
  app.get('/', async (c) => {
    const status = await statusReport(c)
    if (/application\/json/.test(c.req.header('accept') ?? '')) return c.json(status, 200, NO_STORE)
    return c.html(renderStatusPage(status), 200, {
      ...NO_STORE,
      // The page is static markup: no script, nothing loaded from elsewhere.
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      vary: 'Accept',
    })
  })
}
