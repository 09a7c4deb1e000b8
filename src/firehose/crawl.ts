/**
 * com.atproto.sync.requestCrawl: asks relays to (re)subscribe to this PDS.
 * Dependency-free so `npm run request-crawl` can run it from Node as well.
 */
export interface CrawlResult {
  relay: string
  ok: boolean
  status?: number
  error?: string
}

/**
 * KV key holding the time of the last requestCrawl (expires after the minimum
 * interval). Shared by the after-write check, the cron and the status page.
 */
export const LAST_CRAWL_REQUEST_KEY = 'firehose:last-crawl-request'

/** Base URL of a relay given as a host name (https) or a full URL (kept as is, for loopback tests). */
const relayUrl = (relay: string): string => (relay.includes('://') ? relay.replace(/\/+$/, '') : `https://${relay}`)

/** Asks each relay to crawl `hostname`. Never throws. */
export const requestCrawl = async (relays: string[], hostname: string, fetchImpl: typeof fetch = fetch): Promise<CrawlResult[]> =>
  Promise.all(
    relays.map(async (relay): Promise<CrawlResult> => {
      try {
        const res = await fetchImpl(`${relayUrl(relay)}/xrpc/com.atproto.sync.requestCrawl`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ hostname }),
          signal: AbortSignal.timeout(10_000),
        })
        await res.body?.cancel()
        return { relay, ok: res.ok, status: res.status }
      } catch (err) {
        return { relay, ok: false, error: String(err) }
      }
    }),
  )
