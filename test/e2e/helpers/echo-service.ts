/**
 * A loopback atproto service for the proxy and service-auth suites: it has its
 * own did:web document (did:web:localhost%3A<port>, services `#echo`,
 * `#bsky_appview`, `#bsky_fg`, `#bsky_chat`, `#atproto_labeler`, all pointing
 * back at it) and plays AppView, feed generator, chat or labeler as a test
 * needs.
 *
 * Every /xrpc/<nsid> call that carries a bearer token is checked exactly as a
 * real service would check it: `@atproto/xrpc-server`'s `verifyJwt` (signature
 * against the issuer's DID document resolved with `@atproto/identity`, `exp`,
 * `aud`, `lxm`). A token that fails answers 401 with verifyJwt's own error
 * name, so a proxied call that reaches a test with 200 carried a valid token.
 * The default answer echoes what arrived: method, nsid, query, the headers,
 * body length and sha256, and the verified JWT payload. Tests can script other
 * answers per NSID (statuses, error bodies, headers, large bodies).
 */
import { createHash } from 'node:crypto'
import { IdResolver } from '@atproto/identity'
import { verifyJwt } from '@atproto/xrpc-server'
import type { Server } from 'bun'
import { freePort } from '../harness'

/** The service ids the echo's DID document lists, with their types. */
export const ECHO_SERVICES: Record<string, string> = {
  echo: 'EchoService',
  bsky_appview: 'BskyAppView',
  bsky_fg: 'BskyFeedGenerator',
  bsky_chat: 'BskyChatService',
  atproto_labeler: 'AtprotoLabeler',
}

export interface JwtPayload {
  iss: string
  aud: string
  exp: number
  iat?: number
  lxm?: string
  jti?: string
  [k: string]: unknown
}

/** What the echo saw of one request (also its default JSON answer, minus `jwt`). */
export interface EchoRequest {
  method: string
  nsid: string
  /** Path and query exactly as received. */
  path: string
  query: Record<string, string[]>
  /** Lower-cased header names; repeated headers joined with ", ". */
  headers: Record<string, string>
  bodyLength: number
  bodySha256: string
  /** The body parsed as JSON when it is small JSON, else null. */
  bodyJson: unknown
  /** The raw bearer token, if any (kept out of the JSON answer). */
  jwt?: string
  jwtHeader: Record<string, unknown> | null
  /** The payload verifyJwt returned; null without a token or when verification failed. */
  jwtPayload: JwtPayload | null
  /** Which audience verifyJwt accepted: the bare DID or a `did#service` reference. */
  audience: string | null
  /** The issuer's atproto key the signature was checked against (did:key). */
  issuerKey: string | null
  verifyError: { error: string; message: string } | null
}

/** A scripted answer: status, JSON or raw body, extra headers. */
export interface EchoResponse {
  status?: number
  json?: unknown
  body?: Uint8Array | string
  headers?: Record<string, string>
}

/** What the verification of one NSID expects (instead of aud = own DID, lxm = NSID). */
export interface TokenExpectation {
  aud: string | string[]
  lxm: string | null
}

export interface EchoService {
  /** http://localhost:<port> (what the DID document advertises). */
  url: string
  port: number
  did: string
  /** Every request so far, oldest first. */
  requests: EchoRequest[]
  /** The requests for one NSID. */
  requestsFor(nsid: string): EchoRequest[]
  clear(): void
  /** Resolve did:plc issuers against this directory (the reference PDS's accounts). */
  setPlcUrl(url: string): void
  /** Answer this NSID with a fixed response (after verifying the token), until `unscript`. */
  script(nsid: string, response: EchoResponse | ((req: EchoRequest) => EchoResponse)): void
  unscript(nsid?: string): void
  /** Verify this NSID's tokens against another audience / method. */
  expectToken(nsid: string, expectation: TokenExpectation): void
  /** A feed generator record the echo serves through getRecord / getFeedGenerator. */
  addFeed(uri: string, feedGenDid: string): void
  stop(): Promise<void>
}

/** Deterministic filler bytes: byte i of a body of length n (same on both sides). */
export const fillerBytes = (n: number, seed = 7): Uint8Array => {
  const out = new Uint8Array(n)
  let x = seed >>> 0 || 1
  for (let i = 0; i < n; i++) {
    // xorshift32: cheap, deterministic, not compressible by accident
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

export const sha256Hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

/** The NSID that answers `n` filler bytes (query `n`, `seed`) as application/octet-stream. */
export const BYTES_NSID = 'com.example.echo.bytes'

const decodeJsonPart = (part: string | undefined): Record<string, unknown> | null => {
  try {
    const v = JSON.parse(Buffer.from(part ?? '', 'base64url').toString('utf8'))
    return v && typeof v === 'object' ? v : null
  } catch {
    return null
  }
}

const errorInfo = (err: unknown): { error: string; message: string } => {
  const e = err as { customErrorName?: string; error?: string; message?: string; name?: string }
  return { error: e?.customErrorName ?? e?.error ?? e?.name ?? 'Error', message: e?.message ?? String(err) }
}

const smallJson = (contentType: string | null, body: Uint8Array): unknown => {
  if (!contentType?.includes('json') || body.byteLength > 64 * 1024) return null
  try {
    return JSON.parse(new TextDecoder().decode(body))
  } catch {
    return null
  }
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}): Response =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json; charset=utf-8', ...headers } })

/** Starts an echo service on a free loopback port (127.0.0.1, and ::1 when available). */
export interface EchoOptions {
  /** PLC directory for did:plc issuers (also settable later with setPlcUrl). */
  plcUrl?: string
  /** Service endpoints to advertise instead of this server's own URL, by service id. */
  endpoints?: Record<string, string>
  /** false: answer 404 for /.well-known/did.json (an unresolvable did:web). */
  serveDidDoc?: boolean
}

export const startEchoService = async (opts: EchoOptions = {}): Promise<EchoService> => {
  const port = await freePort()
  const url = `http://localhost:${port}`
  const did = `did:web:localhost%3A${port}`
  const requests: EchoRequest[] = []
  const scripts = new Map<string, EchoResponse | ((req: EchoRequest) => EchoResponse)>()
  const expectations = new Map<string, TokenExpectation>()
  const feeds = new Map<string, string>()
  let resolver = new IdResolver({ plcUrl: opts.plcUrl, fetch: globalThis.fetch, timeout: 5000 })

  const didDoc = {
    '@context': ['https://www.w3.org/ns/did/v1'],
    id: did,
    service: Object.entries(ECHO_SERVICES).map(([id, type]) => ({
      id: `#${id}`,
      type,
      serviceEndpoint: opts.endpoints?.[id] ?? url,
    })),
  }

  /** verifyJwt with each acceptable audience in turn (only BadJwtAudience moves on to the next). */
  const verify = async (
    jwt: string,
    nsid: string,
  ): Promise<{ payload: JwtPayload; audience: string; issuerKey: string }> => {
    const exp = expectations.get(nsid)
    const audiences = exp
      ? Array.isArray(exp.aud)
        ? exp.aud
        : [exp.aud]
      : [did, ...Object.keys(ECHO_SERVICES).map((id) => `${did}#${id}`)]
    const lxm = exp ? exp.lxm : nsid
    let issuerKey = ''
    const getSigningKey = async (iss: string, forceRefresh: boolean): Promise<string> => {
      const issDid = iss.split('#')[0] ?? iss
      issuerKey = await resolver.did.resolveAtprotoKey(issDid, forceRefresh)
      return issuerKey
    }
    let last: unknown
    for (const audience of audiences) {
      try {
        const payload = (await verifyJwt(jwt, audience, lxm, getSigningKey)) as JwtPayload
        return { payload, audience, issuerKey }
      } catch (err) {
        last = err
        if (errorInfo(err).error !== 'BadJwtAudience') break
      }
    }
    throw last
  }

  const feedRecord = (uri: string): { uri: string; cid: string; value: Record<string, unknown> } | null => {
    const feedDid = feeds.get(uri)
    if (!feedDid) return null
    return {
      uri,
      cid: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm',
      value: { $type: 'app.bsky.feed.generator', did: feedDid, displayName: 'Echo feed', createdAt: '2026-01-01T00:00:00.000Z' },
    }
  }

  const handle = async (req: Request): Promise<Response> => {
    const u = new URL(req.url)
    if (u.pathname === '/.well-known/did.json') {
      return opts.serveDidDoc === false ? json(404, { error: 'NotFound', message: 'no DID document here' }) : json(200, didDoc)
    }
    // A PLC directory that knows no DID: lets a PDS's PLC_URL point here for "unresolvable did:plc".
    if (u.pathname.startsWith('/did:plc:')) {
      return json(404, { message: `DID not registered: ${decodeURIComponent(u.pathname.slice(1))}` })
    }
    if (!u.pathname.startsWith('/xrpc/')) return json(404, { error: 'NotFound', message: 'not an xrpc path' })
    const nsid = u.pathname.slice('/xrpc/'.length)
    const body = new Uint8Array(await req.arrayBuffer())
    const headers: Record<string, string> = {}
    req.headers.forEach((v, k) => {
      headers[k] = v
    })
    const query: Record<string, string[]> = {}
    for (const [k, v] of u.searchParams) (query[k] ??= []).push(v)
    const auth = req.headers.get('authorization')
    const jwt = auth?.startsWith('Bearer ') ? auth.slice('Bearer '.length) : undefined
    const rec: EchoRequest = {
      method: req.method,
      nsid,
      path: `${u.pathname}${u.search}`,
      query,
      headers,
      bodyLength: body.byteLength,
      bodySha256: sha256Hex(body),
      bodyJson: smallJson(req.headers.get('content-type'), body),
      jwt,
      jwtHeader: jwt ? decodeJsonPart(jwt.split('.')[0]) : null,
      jwtPayload: null,
      audience: null,
      issuerKey: null,
      verifyError: null,
    }
    if (jwt) {
      try {
        const v = await verify(jwt, nsid)
        rec.jwtPayload = v.payload
        rec.audience = v.audience
        rec.issuerKey = v.issuerKey
      } catch (err) {
        rec.verifyError = errorInfo(err)
      }
    }
    requests.push(rec)

    // The AppView's public record read: the reference PDS's getFeed calls it without a token.
    if (nsid === 'com.atproto.repo.getRecord' && !scripts.has(nsid)) {
      const uri = `at://${u.searchParams.get('repo')}/${u.searchParams.get('collection')}/${u.searchParams.get('rkey')}`
      const found = feedRecord(uri)
      return found ? json(200, found) : json(400, { error: 'RecordNotFound', message: `Could not locate record: ${uri}` })
    }
    if (!jwt) return json(401, { error: 'AuthMissing', message: 'Authentication Required' })
    if (rec.verifyError) return json(401, rec.verifyError)

    const scripted = scripts.get(nsid)
    if (scripted) {
      const r = typeof scripted === 'function' ? scripted(rec) : scripted
      if (r.json !== undefined) return json(r.status ?? 200, r.json, r.headers)
      return new Response(r.body ?? null, { status: r.status ?? 200, headers: r.headers })
    }
    if (nsid === BYTES_NSID) {
      const n = Number(u.searchParams.get('n') ?? '0')
      const seed = Number(u.searchParams.get('seed') ?? '7')
      return new Response(fillerBytes(n, seed), { headers: { 'content-type': 'application/octet-stream' } })
    }
    if (nsid === 'app.bsky.feed.getFeedGenerator') {
      const feed = u.searchParams.get('feed') ?? ''
      const found = feedRecord(feed)
      if (!found) return json(400, { error: 'UnknownFeed', message: 'could not find feed' })
      return json(200, {
        view: {
          uri: feed,
          cid: found.cid,
          did: found.value.did,
          creator: { did: feed.split('/')[2], handle: 'creator.test' },
          displayName: 'Echo feed',
          indexedAt: '2026-01-01T00:00:00.000Z',
        },
        isOnline: true,
        isValid: true,
      })
    }
    const { jwt: _hidden, ...echoed } = rec
    return json(200, echoed)
  }

  const servers: Server<undefined>[] = []
  servers.push(Bun.serve({ hostname: '127.0.0.1', port, fetch: handle, maxRequestBodySize: 256 * 1024 * 1024 }))
  try {
    // `localhost` may resolve to ::1 first for some clients; answer there too.
    servers.push(Bun.serve({ hostname: '::1', port, fetch: handle, maxRequestBodySize: 256 * 1024 * 1024 }))
  } catch {
    // no IPv6 loopback here: 127.0.0.1 is enough
  }

  return {
    url,
    port,
    did,
    requests,
    requestsFor: (nsid) => requests.filter((r) => r.nsid === nsid),
    clear: () => {
      requests.length = 0
    },
    setPlcUrl: (plcUrl) => {
      resolver = new IdResolver({ plcUrl, fetch: globalThis.fetch, timeout: 5000 })
    },
    script: (nsid, response) => {
      scripts.set(nsid, response)
    },
    unscript: (nsid) => {
      if (nsid === undefined) scripts.clear()
      else scripts.delete(nsid)
    },
    expectToken: (nsid, expectation) => {
      expectations.set(nsid, expectation)
    },
    addFeed: (uri, feedGenDid) => {
      feeds.set(uri, feedGenDid)
    },
    stop: async () => {
      await Promise.all(servers.map((s) => s.stop(true)))
    },
  }
}
