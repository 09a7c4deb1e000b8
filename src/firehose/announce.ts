/**
 * Keeping relays listening: `com.atproto.sync.requestCrawl` to the configured
 * relays after a write when none is connected, at most once an hour (relays
 * are known to mark a quiet host offline and not come back on their own).
 * It runs in the background (waitUntil); failures are logged, never thrown
 * into a write.
 */
import type { KvCache } from '../cache/kv-cache'
import { LAST_CRAWL_REQUEST_KEY, requestCrawl, type CrawlResult } from './crawl'

const CRAWL_INTERVAL_MS = 60 * 60 * 1000
let lastCheckInIsolate = 0

/**
 * After a write: if no relay is subscribed and none was asked within the hour
 * (KV remembers across isolates), ask the relays to crawl us.
 */
export const requestCrawlIfQuiet = async (opts: {
  cache: KvCache
  relays: string[]
  hostname: string
  subscribers: () => Promise<number>
}): Promise<CrawlResult[] | null> => {
  const now = Date.now()
  if (opts.relays.length === 0 || now - lastCheckInIsolate < CRAWL_INTERVAL_MS) return null
  lastCheckInIsolate = now
  if (await opts.cache.getText(LAST_CRAWL_REQUEST_KEY)) return null
  if ((await opts.subscribers()) > 0) return null
  await opts.cache.put(LAST_CRAWL_REQUEST_KEY, new Date(now).toISOString(), CRAWL_INTERVAL_MS / 1000)
  const results = await requestCrawl(opts.relays, opts.hostname)
  console.log(JSON.stringify({ job: 'requestCrawl', results }))
  return results
}
