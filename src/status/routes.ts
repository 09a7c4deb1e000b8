/**
 * Routes of the status page: `GET /` (HTML, or JSON for a client that asks
 * for it) and `GET /status.json`, which `npm run status` reads.
 */
import type { Context, Hono } from 'hono'
import { LAST_CRAWL_REQUEST_KEY } from '../firehose/crawl'
import { firehoseHub } from '../firehose/hub'
import type { AppEnv } from '../xrpc/context'
import { gatherStatus, type StatusReport } from './data'
import { renderStatusPage } from './page'

const report = (c: Context<AppEnv>): Promise<StatusReport> => {
  const deps = c.get('deps')
  return gatherStatus({
    db: deps.db,
    config: deps.config,
    subscribers: async () => (await firehoseHub(deps.env).stats()).subscribers,
    lastWriteCrawl: () => deps.env.CACHE.get(LAST_CRAWL_REQUEST_KEY),
    waitUntil: deps.waitUntil,
  })
}

// Figures change with every write: never serve them from a cache.
const NO_STORE = { 'cache-control': 'no-store' }

export const mountStatus = (app: Hono<AppEnv>): void => {
  app.get('/status.json', async (c) => c.json(await report(c), 200, NO_STORE))
  app.get('/', async (c) => {
    const status = await report(c)
    if (/application\/json/.test(c.req.header('accept') ?? '')) return c.json(status, 200, NO_STORE)
    return c.html(renderStatusPage(status), 200, {
      ...NO_STORE,
      // The page is static markup: no script, nothing loaded from elsewhere.
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      vary: 'Accept',
    })
  })
}
