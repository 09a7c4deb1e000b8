/**
 * Outbound fetches on a client's say-so (client metadata documents, their
 * `jwks_uri`, permission-set lexicons): a client_id is a URL anyone can
 * choose, so this must not become a way to reach private services (SSRF).
 *
 * The rules: https only, the default port, a DNS name (no IP literal, no
 * local-only name such as `localhost`, `.local`, `.internal`), every address
 * the name resolves to (A and AAAA, over DNS-over-HTTPS: Workers have no
 * resolver) public, no redirect followed, a time limit and a size limit read
 * as the body streams, status exactly 200. Errors are `SafeFetchError`s with
 * a message fit to show the client.
 *
 * In development (`devLoopbackOrigin`, refused in production by src/env.ts)
 * the same checks run and only the transport changes: DNS questions
 * (src/identity/dns.ts) and the request itself go to the loopback origin, which stands in for the internet
 * (the original host travels in `x-dev-host`).
 */
import { readBodyUpTo } from '../bounded-body'
import type { Config } from '../env'
import { dnsQuery, DnsLookupError, type DnsRecordType } from '../identity/dns'

export class SafeFetchError extends Error {
  override name = 'SafeFetchError'
}

/** Names that only mean something on a local network (RFC 6761, 6762, 8375 and common private TLDs). */
const LOCAL_TLDS = new Set(['localhost', 'local', 'internal', 'intranet', 'lan', 'home', 'corp', 'private', 'test', 'invalid', 'example', 'arpa', 'onion', 'alt'])

/** A host name that can only resolve on a private network, or is not a DNS name at all. */
export const isLocalOnlyHostname = (hostname: string): boolean => {
  const labels = hostname.toLowerCase().replace(/\.$/, '').split('.')
  return labels.length < 2 || LOCAL_TLDS.has(labels[labels.length - 1])
}

const isIpLiteral = (hostname: string): boolean => /^\d+\.\d+\.\d+\.\d+$/.test(hostname) || hostname.startsWith('[')

const ipv4Public = (ip: string): boolean => {
  const p = ip.split('.').map(Number)
  if (p.length !== 4 || p.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) return false
  const [a, b, c] = p
  if (a === 0 || a === 10 || a === 127 || a >= 224) return false // this network, private, loopback, multicast, reserved
  if (a === 100 && b >= 64 && b < 128) return false // carrier-grade NAT
  if (a === 169 && b === 254) return false // link-local
  if (a === 172 && b >= 16 && b < 32) return false
  if (a === 192 && b === 168) return false
  if (a === 192 && b === 0 && (c === 0 || c === 2)) return false // IETF protocol assignments, documentation
  if (a === 198 && (b === 18 || b === 19)) return false // benchmarking
  if (a === 198 && b === 51 && c === 100) return false
  if (a === 203 && b === 0 && c === 113) return false
  return true
}

/** Public IPv6: global unicast (2000::/3) outside documentation, and IPv4-mapped forms of public IPv4. */
const ipv6Public = (ip: string): boolean => {
  const lower = ip.toLowerCase()
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower)
  if (mapped) return ipv4Public(mapped[1])
  const first = parseInt(lower.split(':')[0] || '0', 16)
  if (!(first >= 0x2000 && first <= 0x3fff)) return false
  return !lower.startsWith('2001:db8:') && !lower.startsWith('2001:0db8:')
}

/** True for an address a public service may have. */
export const isPublicAddress = (ip: string): boolean => (ip.includes(':') ? ipv6Public(ip) : ipv4Public(ip))

/** A DNS answer, its failure a SafeFetchError (shown to the client). */
const lookup = (cfg: Config, name: string, type: DnsRecordType): Promise<string[]> =>
  dnsQuery(cfg, name, type).catch((err: unknown) => {
    throw err instanceof DnsLookupError ? new SafeFetchError(err.message) : err
  })

/** Throws unless `hostname` resolves, and only to public addresses. */
const assertPublicHost = async (cfg: Config, hostname: string): Promise<void> => {
  const [v4, v6] = await Promise.all([lookup(cfg, hostname, 1), lookup(cfg, hostname, 28)])
  const addresses = [...v4, ...v6]
  if (addresses.length === 0) throw new SafeFetchError(`${hostname} does not resolve`)
  const refused = addresses.find((ip) => !isPublicAddress(ip))
  if (refused) throw new SafeFetchError(`${hostname} resolves to a non-public address`)
}

/** Throws unless `url` is one we may fetch: https, default port, a public DNS name. */
export const assertFetchableUrl = (url: URL): void => {
  if (url.protocol !== 'https:') throw new SafeFetchError('only https URLs are fetched')
  if (url.username || url.password) throw new SafeFetchError('URLs with credentials are not fetched')
  if (url.port !== '') throw new SafeFetchError('URLs with a port are not fetched')
  if (isIpLiteral(url.hostname)) throw new SafeFetchError('URLs with an IP address are not fetched')
  if (isLocalOnlyHostname(url.hostname)) throw new SafeFetchError(`${url.hostname} is not a public host name`)
}

export interface SafeFetchOptions {
  accept: string
  maxBytes: number
  timeoutMs: number
}

/** Reads at most `maxBytes` of a body, failing as soon as it is longer. */
const readLimited = async (res: Response, maxBytes: number): Promise<Uint8Array> => {
  const declared = Number(res.headers.get('content-length') ?? NaN)
  if (declared > maxBytes) {
    await res.body?.cancel()
    throw new SafeFetchError(`response is larger than ${maxBytes} bytes`)
  }
  const body = await readBodyUpTo(res.body, maxBytes)
  if (!body) throw new SafeFetchError(`response is larger than ${maxBytes} bytes`)
  return body
}

/** GETs `target` under the rules above; returns the response's content type and body. */
export const safeFetch = async (cfg: Config, target: string, opts: SafeFetchOptions): Promise<{ contentType: string; body: Uint8Array }> => {
  let url: URL
  try {
    url = new URL(target)
  } catch {
    throw new SafeFetchError('not a valid URL')
  }
  assertFetchableUrl(url)
  await assertPublicHost(cfg, url.hostname)
  const dev = cfg.devLoopbackOrigin
  const requestUrl = dev ? `${dev}${url.pathname}${url.search}` : url.href
  let res: Response
  try {
    res = await fetch(requestUrl, {
      headers: { accept: opts.accept, ...(dev ? { 'x-dev-host': url.host } : {}) },
      redirect: 'manual',
      signal: AbortSignal.timeout(opts.timeoutMs),
    })
  } catch (err) {
    const timedOut = (err as Error)?.name === 'TimeoutError'
    throw new SafeFetchError(timedOut ? `no answer within ${opts.timeoutMs / 1000} s` : 'could not connect')
  }
  if (res.status >= 300 && res.status < 400) {
    await res.body?.cancel()
    throw new SafeFetchError(`redirects are not followed (HTTP ${res.status})`)
  }
  if (res.status !== 200) {
    await res.body?.cancel()
    throw new SafeFetchError(`HTTP ${res.status}`)
  }
  const contentType = (res.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase()
  return { contentType, body: await readLimited(res, opts.maxBytes) }
}

/** A JSON document: the content type must be `application/json` when `strictType` (client metadata), or absent/JSON otherwise. */
export const safeFetchJson = async (cfg: Config, target: string, opts: Omit<SafeFetchOptions, 'accept'> & { strictType: boolean }): Promise<unknown> => {
  const { contentType, body } = await safeFetch(cfg, target, { ...opts, accept: 'application/json' })
  if (contentType !== 'application/json' && (opts.strictType || contentType !== '')) {
    throw new SafeFetchError(`content type must be application/json, got "${contentType || 'none'}"`)
  }
  try {
    return JSON.parse(new TextDecoder().decode(body))
  } catch {
    throw new SafeFetchError('the document is not valid JSON')
  }
}
