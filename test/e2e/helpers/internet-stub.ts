/**
 * The internet, on loopback, for the OAuth suites. The PDS runs with
 * PDS_DEV_LOOPBACK_ORIGIN pointing here (and PLC_URL too), so every outbound
 * fetch its authorization server makes (after the same checks as in
 * production: https, public DNS name, public addresses) lands here:
 *
 * - `GET /dns-query?name=&type=` answers DNS-over-HTTPS (JSON API) from
 *   `dns` (A, AAAA and TXT records; unknown names are NXDOMAIN);
 * - requests naming a host in `x-dev-host` are answered by `sites[host]`
 *   (client metadata documents, JWKS, a lexicon publisher's PDS);
 * - `GET /did:plc:...` is a PLC directory for `plc`.
 *
 * Everything that arrives is recorded, so a test can check what the PDS
 * fetched (and what it did not).
 */
import type { Server } from 'bun'
import { freePort } from '../harness'

export type SiteHandler = (req: Request, url: URL) => Response | Promise<Response>

export interface InternetStub {
  url: string
  /** name → records by type (1 = A, 28 = AAAA, 16 = TXT). */
  dns: Map<string, { 1?: string[]; 28?: string[]; 16?: string[] }>
  sites: Map<string, SiteHandler>
  plc: Map<string, object>
  /** `host path` of every site request, in order. */
  requests: string[]
  stop(): void
}

export const json = (body: unknown, init: ResponseInit = {}): Response =>
  new Response(JSON.stringify(body), { status: 200, ...init, headers: { 'content-type': 'application/json', ...init.headers } })

export const startInternetStub = async (): Promise<InternetStub> => {
  const port = await freePort()
  const stub: Omit<InternetStub, 'stop'> = { url: `http://127.0.0.1:${port}`, dns: new Map(), sites: new Map(), plc: new Map(), requests: [] }
  const handle = async (req: Request): Promise<Response> => {
    const url = new URL(req.url)
    if (url.pathname === '/dns-query') {
      const name = (url.searchParams.get('name') ?? '').toLowerCase()
      const type = Number(url.searchParams.get('type')) as 1 | 28 | 16
      const records = stub.dns.get(name)
      if (!records) return json({ Status: 3, Answer: [] })
      return json({ Status: 0, Answer: (records[type] ?? []).map((data) => ({ name, type, TTL: 60, data: type === 16 ? `"${data}"` : data })) })
    }
    const path = decodeURIComponent(url.pathname)
    if (path.startsWith('/did:plc:')) {
      const doc = stub.plc.get(path.slice(1))
      return doc ? json(doc) : json({ message: 'DID not registered' }, { status: 404 })
    }
    const host = req.headers.get('x-dev-host') ?? ''
    stub.requests.push(`${host} ${url.pathname}${url.search}`)
    const site = stub.sites.get(host)
    return site ? site(req, url) : new Response('no such site', { status: 404 })
  }
  const server: Server<undefined> = Bun.serve({ hostname: '127.0.0.1', port, fetch: handle })
  return { ...stub, stop: () => server.stop(true) }
}

/** A public address for a stub host name (documentation range would be refused as non-public). */
export const PUBLIC_IP = '93.184.216.34'
