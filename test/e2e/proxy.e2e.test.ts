/**
 * XRPC proxying ("pipethrough") end to end: calls the PDS does not serve are
 * forwarded to a service with a fresh service JWT, as the reference PDS does
 * (pipethrough.js, api/app/bsky/feed/getFeed.js, api/com/atproto/moderation/
 * createReport.js in @atproto/pds 0.5.35).
 *
 * The services are loopback echo servers with their own did:web documents
 * (helpers/echo-service.ts) that verify every forwarded token with
 * @atproto/xrpc-server's verifyJwt against the issuer's DID document, so a 200
 * here means the token was signed by the account key with the right aud/lxm.
 * Every request is also sent to the reference PDS (test/peers, did:plc account,
 * same echo services as its AppView and moderation service): each expectation
 * below is checked against both servers, so a drift of the reference shows up
 * as a failure labelled [ref].
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { Secp256k1Keypair } from '@atproto/crypto'
import { createServiceJwt } from '@atproto/xrpc-server'
import { type PdsProcess, REPO_ROOT, startPds, stopPds } from './harness'
import {
  BYTES_NSID,
  type EchoRequest,
  type EchoService,
  fillerBytes,
  sha256Hex,
  startEchoService,
} from './helpers/echo-service'
import {
  createSession,
  decodeJwt,
  expectStatus,
  request,
  show,
  signHs256,
  type XrpcResponse,
  xget,
  xpost,
} from './xrpc-client'

interface Peer {
  name: 'ours' | 'ref'
  url: string
  did: string
  handle: string
  password: string
  token: string
}

interface ReferencePds {
  url: string
  plcUrl: string
  did: string
  handle: string
  password: string
  accessJwt: string
  stop(): Promise<void>
}

const REFERENCE = join(REPO_ROOT, 'test/peers/reference-pds.mjs')
const HAVE_REFERENCE = existsSync(REFERENCE)
const HANDLE = 'alice.test'
const PASSWORD = 'proxy-password-1'

/** AppView, moderation service, and a PLC directory that knows no DID (our PLC_URL). */
let appView: EchoService
/** The "second service DID": atproto-proxy target and feed generator. */
let second: EchoService
/** A did:web whose `#echo` endpoint is a closed port and whose `#bsky_fg` endpoint is `second`. */
let split: EchoService
/** A did:web with no DID document. */
let noDoc: EchoService
let pds: PdsProcess
let refPds: ReferencePds | undefined
let ours: Peer
let ref: Peer | undefined

beforeAll(async () => {
  ;[appView, second, noDoc] = await Promise.all([
    startEchoService(),
    startEchoService(),
    startEchoService({ serveDidDoc: false }),
  ])
  const closed = await startEchoService()
  await closed.stop()
  split = await startEchoService({ endpoints: { echo: closed.url, bsky_fg: second.url } })
  const mod = HAVE_REFERENCE
    ? ((await import(REFERENCE as string)) as { spawnReferencePds(o: Record<string, unknown>): Promise<ReferencePds> })
    : undefined
  const [p, r] = await Promise.all([
    startPds({
      handle: HANDLE,
      password: PASSWORD,
      vars: {
        BSKY_APPVIEW_URL: appView.url,
        BSKY_APPVIEW_DID: appView.did,
        MOD_SERVICE_URL: appView.url,
        MOD_SERVICE_DID: appView.did,
        PLC_URL: appView.url,
      },
    }),
    mod?.spawnReferencePds({
      handle: HANDLE,
      password: PASSWORD,
      timeoutMs: 90_000,
      env: {
        bskyAppViewUrl: appView.url,
        bskyAppViewDid: appView.did,
        modServiceUrl: appView.url,
        modServiceDid: appView.did,
      },
    }),
  ])
  pds = p
  refPds = r
  ours = { name: 'ours', url: pds.url, did: pds.did, handle: HANDLE, password: PASSWORD, token: '' }
  ours.token = (await createSession(pds, HANDLE, PASSWORD)).accessJwt
  if (r) {
    ref = { name: 'ref', url: r.url, did: r.did, handle: r.handle, password: PASSWORD, token: r.accessJwt }
    // The echo services check the reference account's tokens against its PLC directory.
    for (const e of [appView, second, split, noDoc]) e.setPlcUrl(r.plcUrl)
  }
}, 150_000)

afterAll(async () => {
  await Promise.all([stopPds(pds), refPds?.stop(), appView?.stop(), second?.stop(), split?.stop(), noDoc?.stop()])
})

/** Runs the same check on our PDS and on the reference; failures are labelled with the server. */
const onBoth = async (check: (p: Peer) => Promise<void>): Promise<void> => {
  const failures: string[] = []
  for (const p of ref ? [ours, ref] : [ours]) {
    try {
      await check(p)
    } catch (err) {
      failures.push(`[${p.name}] ${(err as Error).message}`)
    }
  }
  if (failures.length) throw new Error(failures.join('\n\n'))
}

/** The requests the echo services received while `call` ran. */
const capture = async (call: () => Promise<XrpcResponse>): Promise<{ res: XrpcResponse; seen: EchoRequest[] }> => {
  for (const e of [appView, second, split, noDoc]) e.clear()
  const res = await call()
  const seen = [appView, second, split, noDoc].flatMap((e) => e.requests)
  return { res, seen }
}

const send = (
  p: Peer,
  nsid: string,
  init: { method?: string; query?: string; headers?: Record<string, string>; body?: BodyInit; token?: string | null } = {},
): Promise<XrpcResponse> => {
  const token = init.token === undefined ? p.token : init.token
  return request(p, `/xrpc/${nsid}${init.query ?? ''}`, {
    method: init.method ?? 'GET',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...init.headers },
    body: init.body,
  })
}

const expectError = (res: XrpcResponse, status: number, error: string, message?: string): void => {
  const got = { status: res.status, error: res.body?.error, ...(message === undefined ? {} : { message: res.body?.message }) }
  const want = { status, error, ...(message === undefined ? {} : { message }) }
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`expected ${JSON.stringify(want)}, got ${show(res)}`)
}

/** One forwarded request reached exactly `target`, with a token that verified. */
const expectForwarded = (seen: EchoRequest[], target: EchoService, p: Peer, nsid: string): EchoRequest => {
  expect(seen.map((r) => `${r.nsid} ${r.verifyError?.error ?? 'verified'}`)).toEqual([`${nsid} verified`])
  const [got] = seen
  expect(got.headers.host).toBe(`localhost:${target.port}`)
  expect(got.jwtPayload?.iss).toBe(p.did)
  return got
}

describe('the echo service checks tokens like a real service', () => {
  const mint = async (over: Partial<{ aud: string; lxm: string; exp: number; key: string }> = {}): Promise<string> =>
    createServiceJwt({
      iss: pds.did,
      aud: over.aud ?? appView.did,
      lxm: over.lxm ?? 'com.example.echo.ping',
      exp: over.exp,
      keypair: await Secp256k1Keypair.import(over.key ?? pds.signingKeyHex),
    })
  const ping = (jwt?: string) =>
    request({ url: appView.url }, '/xrpc/com.example.echo.ping', { headers: jwt ? { authorization: `Bearer ${jwt}` } : {} })

  test("accepts a token signed with the account key, resolved from the PDS's own DID document", async () => {
    const res = expectStatus(await ping(await mint()), 200)
    expect(res.body.jwtPayload).toMatchObject({ iss: pds.did, aud: appView.did, lxm: 'com.example.echo.ping' })
    expect(appView.requests.at(-1)?.issuerKey).toBe(pds.didKey)
  })

  test('refuses a wrong lxm, another audience, an expired token, another key, and no token', async () => {
    const other = Buffer.from(await (await Secp256k1Keypair.create({ exportable: true })).export()).toString('hex')
    expectError(await ping(await mint({ lxm: 'com.example.echo.other' })), 401, 'BadJwtLexiconMethod')
    expectError(await ping(await mint({ aud: second.did })), 401, 'BadJwtAudience')
    expectError(await ping(await mint({ exp: Math.floor(Date.now() / 1000) - 5 })), 401, 'JwtExpired')
    expectError(await ping(await mint({ key: other })), 401, 'BadJwtSignature')
    expectError(await ping(), 401, 'AuthMissing')
  })
})

describe('app.bsky.* without atproto-proxy goes to the configured AppView', () => {
  test('a query: path and query unchanged, a fresh ES256K service token (aud = bare AppView DID, lxm, 60 s, jti)', async () => {
    const jtis: string[] = []
    await onBoth(async (p) => {
      // Encoded and repeated parameters, '+', an empty value: the query string travels as written.
      const query = '?q=a+b%2Bc%20d&t=%E2%9C%93&e=&x=%2F%3F%26&uris=at%3A%2F%2Fa&uris=at%3A%2F%2Fb'
      const { res, seen } = await capture(() => send(p, 'app.bsky.feed.searchPosts', { query }))
      expectStatus(res, 200)
      const got = expectForwarded(seen, appView, p, 'app.bsky.feed.searchPosts')
      expect(got.method).toBe('GET')
      expect(got.path).toBe(`/xrpc/app.bsky.feed.searchPosts${query}`)
      expect(got.jwtHeader).toEqual({ typ: 'JWT', alg: 'ES256K' })
      const jwt = got.jwtPayload!
      expect({ aud: jwt.aud, lxm: jwt.lxm, verifiedAs: got.audience }).toEqual({
        aud: appView.did,
        lxm: 'app.bsky.feed.searchPosts',
        verifiedAs: appView.did,
      })
      expect(jwt.exp - (jwt.iat ?? 0)).toBe(60)
      expect(Math.abs((jwt.iat ?? 0) - Date.now() / 1000)).toBeLessThan(30)
      expect(jwt.jti).toMatch(/^[0-9a-f]{32}$/)
      jtis.push(String(jwt.jti))
      // The client's own access token never leaves the PDS.
      expect(got.headers.authorization).not.toContain(p.token)
      // The answer is the echo's, byte for byte.
      expect(res.body.bodySha256).toBe(got.bodySha256)
      expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8')
    })
    expect(new Set(jtis).size).toBe(jtis.length)
  })

  test("our tokens are checked against our DID document's key", async () => {
    const { seen } = await capture(() => send(ours, 'app.bsky.feed.searchPosts', { query: '?q=k' }))
    expect(seen[0]?.issuerKey).toBe(pds.didKey)
  })

  test('forwards accept-language, atproto-accept-labelers, x-atproto-*, x-bsky-topics; drops other client headers', async () => {
    const sent = {
      'accept-language': 'fr, en;q=0.5',
      'atproto-accept-labelers': 'did:plc:ar7c4by46qjdydhdevvrndac;redact, did:web:labeler.test',
      'x-atproto-test': 'forward-me',
      'x-bsky-topics': 'science',
      cookie: 'session=secret',
      'x-custom': 'keep-out',
      'x-forwarded-for': '203.0.113.9',
      origin: 'https://evil.example',
    }
    await onBoth(async (p) => {
      const { res, seen } = await capture(() => send(p, 'app.bsky.feed.searchPosts', { query: '?q=h', headers: sent }))
      expectStatus(res, 200)
      const h = expectForwarded(seen, appView, p, 'app.bsky.feed.searchPosts').headers
      const pick = (names: string[]): Record<string, string | null> => Object.fromEntries(names.map((n) => [n, h[n] ?? null]))
      expect(pick(Object.keys(sent))).toEqual({
        'accept-language': sent['accept-language'],
        'atproto-accept-labelers': sent['atproto-accept-labelers'],
        'x-atproto-test': 'forward-me',
        'x-bsky-topics': 'science',
        cookie: null,
        'x-custom': null,
        'x-forwarded-for': null,
        origin: null,
      })
      expect(h['atproto-proxy']).toBeUndefined()
    })
  })

  test('a JSON procedure: body, content-type and method forwarded unchanged', async () => {
    const body = JSON.stringify({ seenAt: '2026-11-23T12:00:00.000Z' })
    await onBoth(async (p) => {
      const { res, seen } = await capture(() =>
        send(p, 'app.bsky.notification.updateSeen', { method: 'POST', headers: { 'content-type': 'application/json' }, body }),
      )
      expectStatus(res, 200)
      const got = expectForwarded(seen, appView, p, 'app.bsky.notification.updateSeen')
      expect({ method: got.method, type: got.headers['content-type'], sha: got.bodySha256, json: got.bodyJson }).toEqual({
        method: 'POST',
        type: 'application/json',
        sha: sha256Hex(new TextEncoder().encode(body)),
        json: JSON.parse(body),
      })
      expect(got.jwtPayload?.lxm).toBe('app.bsky.notification.updateSeen')
    })
  })

  test('response headers: content-type, content-language, atproto-repo-rev, atproto-content-labelers, retry-after; nothing else', async () => {
    appView.script('app.bsky.unspecced.getConfig', {
      body: '{"checkEmailConfirmed":true}',
      headers: {
        'content-type': 'application/json; charset=utf-8',
        'content-language': 'fr',
        'atproto-repo-rev': '3lzz2abcdxyz2',
        'atproto-content-labelers': 'did:plc:ar7c4by46qjdydhdevvrndac;redact',
        'retry-after': '3',
        'x-upstream-private': 'no',
        'set-cookie': 'upstream=1',
      },
    })
    await onBoth(async (p) => {
      const res = expectStatus(await send(p, 'app.bsky.unspecced.getConfig'), 200)
      expect(res.text).toBe('{"checkEmailConfirmed":true}')
      const h = (n: string) => res.headers.get(n)
      expect({
        type: h('content-type'),
        lang: h('content-language'),
        rev: h('atproto-repo-rev'),
        labelers: h('atproto-content-labelers'),
        retry: h('retry-after'),
        priv: h('x-upstream-private'),
        cookie: h('set-cookie'),
      }).toEqual({
        type: 'application/json; charset=utf-8',
        lang: 'fr',
        rev: '3lzz2abcdxyz2',
        labelers: 'did:plc:ar7c4by46qjdydhdevvrndac;redact',
        retry: '3',
        priv: null,
        cookie: null,
      })
    })
    appView.unscript()
  })

  test('chat.bsky.* without the header goes to the AppView too (the reference has no chat default)', async () => {
    await onBoth(async (p) => {
      const { res, seen } = await capture(() => send(p, 'chat.bsky.convo.listConvos'))
      expectStatus(res, 200)
      expect(expectForwarded(seen, appView, p, 'chat.bsky.convo.listConvos').jwtPayload?.aud).toBe(appView.did)
    })
  })
})

describe('atproto-proxy names another service', () => {
  test('a second service DID: the request goes to its endpoint, aud is its bare DID', async () => {
    await onBoth(async (p) => {
      const { res, seen } = await capture(() =>
        send(p, 'com.example.echo.thing', { query: '?a=1', headers: { 'atproto-proxy': `${second.did}#echo` } }),
      )
      expectStatus(res, 200)
      const got = expectForwarded(seen, second, p, 'com.example.echo.thing')
      expect({ aud: got.jwtPayload?.aud, lxm: got.jwtPayload?.lxm, path: got.path }).toEqual({
        aud: second.did,
        lxm: 'com.example.echo.thing',
        path: '/xrpc/com.example.echo.thing?a=1',
      })
    })
  })

  test("the service id picks the endpoint in the target's DID document; the DID stays the audience", async () => {
    second.expectToken('app.bsky.feed.getFeedSkeleton', { aud: split.did, lxm: 'app.bsky.feed.getFeedSkeleton' })
    await onBoth(async (p) => {
      const { res, seen } = await capture(() =>
        send(p, 'app.bsky.feed.getFeedSkeleton', { query: '?feed=x', headers: { 'atproto-proxy': `${split.did}#bsky_fg` } }),
      )
      expectStatus(res, 200)
      expect(expectForwarded(seen, second, p, 'app.bsky.feed.getFeedSkeleton').jwtPayload?.aud).toBe(split.did)
    })
  })

  test('a 5 MiB POST streams through unchanged, and a gzip body keeps its content-encoding', async () => {
    const big = fillerBytes(5 * 1024 * 1024, 42)
    const gz = gzipSync(JSON.stringify({ text: 'x'.repeat(10_000) }))
    await onBoth(async (p) => {
      const { res, seen } = await capture(() =>
        send(p, 'com.example.echo.upload', {
          method: 'POST',
          headers: { 'atproto-proxy': `${second.did}#echo`, 'content-type': 'application/octet-stream' },
          body: big,
        }),
      )
      expectStatus(res, 200)
      const got = expectForwarded(seen, second, p, 'com.example.echo.upload')
      expect({ length: got.bodyLength, sha: got.bodySha256, type: got.headers['content-type'] }).toEqual({
        length: big.byteLength,
        sha: sha256Hex(big),
        type: 'application/octet-stream',
      })
      const zipped = await capture(() =>
        send(p, 'com.example.echo.upload', {
          method: 'POST',
          headers: { 'atproto-proxy': `${second.did}#echo`, 'content-type': 'application/json', 'content-encoding': 'gzip' },
          body: gz,
        }),
      )
      expectStatus(zipped.res, 200)
      const z = zipped.seen[0]
      expect({ enc: z?.headers['content-encoding'], sha: z?.bodySha256 }).toEqual({ enc: 'gzip', sha: sha256Hex(gz) })
    })
  })

  test('a 3 MB binary answer streams back unchanged', async () => {
    const n = 3_000_000
    await onBoth(async (p) => {
      const res = await send(p, BYTES_NSID, { query: `?n=${n}&seed=9`, headers: { 'atproto-proxy': `${second.did}#echo` } })
      expectStatus(res, 200)
      expect(res.headers.get('content-type')).toBe('application/octet-stream')
      expect({ length: res.bytes.byteLength, sha: sha256Hex(res.bytes) }).toEqual({ length: n, sha: sha256Hex(fillerBytes(n, 9)) })
    })
  })

  test('malformed or unresolvable headers: 400 InvalidRequest with the reference messages, before auth', async () => {
    const cases: [string, string][] = [
      ['#echo', 'no did specified in proxy header'],
      ['did:web:example.com', 'no service id specified in proxy header'],
      ['did:web:example.com#', 'no service id specified in proxy header'],
      ['did:web:a.com#b#c', 'invalid proxy header format'],
      ['did:web:a b.com#echo', 'proxy header cannot contain spaces'],
      [`${second.did}#no_such_service`, 'could not resolve proxy did service url'],
      [`${noDoc.did}#echo`, 'could not resolve proxy did'],
      ['did:plc:aaaaaaaaaaaaaaaaaaaaaaaa#echo', 'could not resolve proxy did'],
    ]
    await onBoth(async (p) => {
      for (const [header, message] of cases) {
        for (const token of [p.token, null]) {
          const { res, seen } = await capture(() => send(p, 'app.bsky.feed.searchPosts', { token, headers: { 'atproto-proxy': header } }))
          try {
            expectError(res, 400, 'InvalidRequest', message)
            expect(seen).toEqual([])
          } catch (err) {
            throw new Error(`atproto-proxy: ${header} (${token ? 'with' : 'without'} token): ${(err as Error).message}`)
          }
        }
      }
    })
  })

  test('an unreachable endpoint: 502 UpstreamFailure "Upstream service unreachable"', async () => {
    await onBoth(async (p) => {
      expectError(
        await send(p, 'com.example.echo.thing', { headers: { 'atproto-proxy': `${split.did}#echo` } }),
        502,
        'UpstreamFailure',
        'Upstream service unreachable',
      )
    })
  })

  test('an invalid NSID in the path is not forwarded: 400 InvalidRequest "invalid xrpc path"', async () => {
    await onBoth(async (p) => {
      const answers: Record<string, string> = {}
      for (const nsid of ['not..valid', 'com.example.under_score', 'com.example.trailing.', 'com.example.sp%20ace']) {
        const { res, seen } = await capture(() => send(p, nsid, { headers: { 'atproto-proxy': `${second.did}#echo` } }))
        answers[nsid] = `${res.status} ${res.body?.error}: ${res.body?.message} (forwarded ${seen.length})`
      }
      expect(answers).toEqual(Object.fromEntries(Object.keys(answers).map((k) => [k, '400 InvalidRequest: invalid xrpc path (forwarded 0)'])))
    })
  })

  test('CORS preflight lets browser clients send atproto-proxy and atproto-accept-labelers', async () => {
    await onBoth(async (p) => {
      const res = await request(p, '/xrpc/app.bsky.feed.searchPosts', {
        method: 'OPTIONS',
        headers: {
          origin: 'https://bsky.app',
          'access-control-request-method': 'GET',
          'access-control-request-headers': 'authorization,atproto-proxy,atproto-accept-labelers',
        },
      })
      expect(res.status).toBe(204)
      expect(res.headers.get('access-control-allow-origin')).toBe('*')
      const allowed = (res.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/\s*,\s*/)
      expect(allowed).toEqual(expect.arrayContaining(['authorization', 'atproto-proxy', 'atproto-accept-labelers']))
    })
  })

  test('only GET and POST are forwarded', async () => {
    await onBoth(async (p) => {
      const { res, seen } = await capture(() =>
        send(p, 'com.example.echo.thing', { method: 'PUT', headers: { 'atproto-proxy': `${second.did}#echo` } }),
      )
      expectError(res, 400, 'InvalidRequest', 'XRPC requests only supports GET and POST')
      expect(seen).toEqual([])
    })
  })
})

describe('upstream statuses and errors pass through', () => {
  const cases: { name: string; status: number; type: string; body: string; want: [number, string, string?] }[] = [
    { name: 'a 400 with a custom error', status: 400, type: 'application/json', body: '{"error":"Custom","message":"custom failure"}', want: [400, 'Custom', 'custom failure'] },
    { name: "the service's own 401", status: 401, type: 'application/json', body: '{"error":"AuthMissing","message":"upstream says no"}', want: [401, 'AuthMissing', 'upstream says no'] },
    { name: 'a 404 without a message', status: 404, type: 'application/json', body: '{"error":"NotFound"}', want: [404, 'NotFound'] },
    { name: 'a 429', status: 429, type: 'application/json', body: '{"error":"RateLimitExceeded","message":"slow down"}', want: [429, 'RateLimitExceeded', 'slow down'] },
    { name: 'a 500 becomes 502, error kept', status: 500, type: 'application/json', body: '{"error":"Boom","message":"kaput"}', want: [502, 'Boom', 'kaput'] },
    { name: 'a 502 with a text body', status: 502, type: 'text/plain', body: 'bad gateway', want: [502, 'UpstreamFailure', 'Upstream Failure'] },
    { name: 'an empty 503', status: 503, type: 'text/plain', body: '', want: [503, 'NotEnoughResources', 'Not Enough Resources'] },
  ]
  for (const c of cases) {
    test(c.name, async () => {
      second.script('com.example.echo.fail', { status: c.status, body: c.body, headers: { 'content-type': c.type } })
      await onBoth(async (p) => {
        const res = await send(p, 'com.example.echo.fail', { headers: { 'atproto-proxy': `${second.did}#echo` } })
        expectError(res, c.want[0], c.want[1], c.want[2])
      })
      second.unscript()
    })
  }
})

describe('authentication', () => {
  test('no token: 401 AuthMissing, nothing forwarded', async () => {
    await onBoth(async (p) => {
      const variants: Record<string, string>[] = [{}, { 'atproto-proxy': `${second.did}#echo` }]
      for (const headers of variants) {
        const { res, seen } = await capture(() => send(p, 'app.bsky.feed.searchPosts', { token: null, headers }))
        expectError(res, 401, 'AuthMissing', 'Authentication Required')
        expect(seen).toEqual([])
      }
    })
  })

  test('a garbage token, a refresh token, a service token: 400 InvalidToken, nothing forwarded', async () => {
    await onBoth(async (p) => {
      const refresh = (await createSession(p, p.handle, p.password)).refreshJwt
      const svc = expectStatus(await xget(p, 'com.atproto.server.getServiceAuth', { aud: appView.did, lxm: 'app.bsky.feed.searchPosts' }, p.token), 200).body.token
      for (const token of ['garbage', refresh, svc]) {
        const { res, seen } = await capture(() => send(p, 'app.bsky.feed.searchPosts', { token }))
        expectError(res, 400, 'InvalidToken', 'Token could not be verified')
        expect(seen).toEqual([])
      }
    })
  })

  test('an expired access token: 400 ExpiredToken, nothing forwarded (ours: signed with its session secret)', async () => {
    const claims = decodeJwt(ours.token)
    const expired = signHs256(
      pds.jwtSecret,
      { ...claims, iat: claims.iat - 7200, exp: Math.floor(Date.now() / 1000) - 10 },
      { typ: 'at+jwt' },
    )
    const { res, seen } = await capture(() => send(ours, 'app.bsky.feed.searchPosts', { token: expired }))
    expectError(res, 400, 'ExpiredToken', 'Token has expired')
    expect(seen).toEqual([])
  })

  test('a protected account method is never forwarded: 400 InvalidToken "Bad token method"', async () => {
    // The reference serves admin.sendEmail itself; its catch-all refuses the
    // PROTECTED_METHODS list before auth (pipethrough.js). A single-user PDS
    // without e-mail does not serve it, so the catch-all rule applies.
    const { res, seen } = await capture(() =>
      send(ours, 'com.atproto.admin.sendEmail', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }),
    )
    expectError(res, 400, 'InvalidToken', 'Bad token method')
    expect(seen).toEqual([])
  })
})

describe('app passwords', () => {
  const appSession = async (p: Peer, name: string, privileged: boolean): Promise<string> => {
    const created = expectStatus(await xpost(p, 'com.atproto.server.createAppPassword', { name, privileged }, p.token), 200)
    expect(created.body).toMatchObject({ name, privileged })
    return (await createSession(p, p.handle, created.body.password)).accessJwt
  }
  const chat = (p: Peer, token: string) =>
    capture(() => send(p, 'chat.bsky.convo.listConvos', { token, headers: { 'atproto-proxy': `${second.did}#bsky_chat` } }))

  test('an ordinary app password reaches the AppView but not chat.bsky.*', async () => {
    await onBoth(async (p) => {
      const token = await appSession(p, 'plain', false)
      const { res, seen } = await capture(() => send(p, 'app.bsky.feed.searchPosts', { token, query: '?q=a' }))
      expectStatus(res, 200)
      expectForwarded(seen, appView, p, 'app.bsky.feed.searchPosts')
      for (const call of [() => chat(p, token), () => capture(() => send(p, 'chat.bsky.convo.listConvos', { token }))]) {
        const refused = await call()
        expectError(refused.res, 400, 'InvalidToken', 'Bad token method')
        expect(refused.seen).toEqual([])
      }
    })
  })

  test('a privileged app password and the account password reach chat.bsky.*', async () => {
    await onBoth(async (p) => {
      for (const token of [await appSession(p, 'privileged', true), p.token]) {
        const { res, seen } = await chat(p, token)
        expectStatus(res, 200)
        const got = expectForwarded(seen, second, p, 'chat.bsky.convo.listConvos')
        expect({ aud: got.jwtPayload?.aud, lxm: got.jwtPayload?.lxm }).toEqual({ aud: second.did, lxm: 'chat.bsky.convo.listConvos' })
      }
    })
  })
})

describe('createReport goes to the moderation service', () => {
  test('aud = the moderation DID, lxm = createReport, the report as sent, the answer passed back', async () => {
    const report = (p: Peer) => ({
      reasonType: 'com.atproto.moderation.defs#reasonSpam',
      reason: 'echo test',
      subject: { $type: 'com.atproto.admin.defs#repoRef', did: p.did },
    })
    appView.script('com.atproto.moderation.createReport', (req) => ({
      json: { id: 7, ...(req.bodyJson as object), reportedBy: req.jwtPayload?.iss, createdAt: '2026-11-23T12:00:00.000Z' },
    }))
    await onBoth(async (p) => {
      const { res, seen } = await capture(() => xpost(p, 'com.atproto.moderation.createReport', report(p), p.token))
      expectStatus(res, 200)
      const got = expectForwarded(seen, appView, p, 'com.atproto.moderation.createReport')
      expect({ aud: got.jwtPayload?.aud, body: got.bodyJson }).toEqual({ aud: appView.did, body: report(p) })
      expect(res.body).toEqual({ id: 7, ...report(p), reportedBy: p.did, createdAt: '2026-11-23T12:00:00.000Z' })
    })
    appView.unscript()
  })
})

describe('getFeed is addressed to the feed generator', () => {
  const feedFor = async (p: Peer, rkey: string): Promise<string> => {
    const uri = `at://${p.did}/app.bsky.feed.generator/${rkey}`
    // The record lives in the account's repo and, as indexed, at the AppView.
    const record = { $type: 'app.bsky.feed.generator', did: second.did, displayName: 'Echo', createdAt: new Date().toISOString() }
    expectStatus(await xpost(p, 'com.atproto.repo.putRecord', { repo: p.did, collection: 'app.bsky.feed.generator', rkey, record }, p.token), 200)
    appView.addFeed(uri, second.did)
    return uri
  }

  test('sent to the AppView with aud = the generator DID, lxm = getFeedSkeleton', async () => {
    appView.expectToken('app.bsky.feed.getFeed', { aud: second.did, lxm: 'app.bsky.feed.getFeedSkeleton' })
    await onBoth(async (p) => {
      const uri = await feedFor(p, 'echo-feed')
      const { res, seen } = await capture(() => xget(p, 'app.bsky.feed.getFeed', { feed: uri, limit: 5 }, p.token))
      expectStatus(res, 200)
      const feedCalls = seen.filter((r) => r.nsid === 'app.bsky.feed.getFeed')
      expect(feedCalls.length).toBe(1)
      const got = expectForwarded(feedCalls, appView, p, 'app.bsky.feed.getFeed')
      expect({ aud: got.jwtPayload?.aud, lxm: got.jwtPayload?.lxm, query: got.query }).toEqual({
        aud: second.did,
        lxm: 'app.bsky.feed.getFeedSkeleton',
        query: { feed: [uri], limit: ['5'] },
      })
    })
  })

  test("a feed in another repo: the generator DID comes from the AppView's copy of the record", async () => {
    const uri = 'at://did:plc:bbbbbbbbbbbbbbbbbbbbbbbb/app.bsky.feed.generator/elsewhere'
    appView.addFeed(uri, split.did)
    appView.expectToken('app.bsky.feed.getFeed', { aud: split.did, lxm: 'app.bsky.feed.getFeedSkeleton' })
    await onBoth(async (p) => {
      const { res, seen } = await capture(() => xget(p, 'app.bsky.feed.getFeed', { feed: uri }, p.token))
      expectStatus(res, 200)
      const feedCalls = seen.filter((r) => r.nsid === 'app.bsky.feed.getFeed')
      expect(expectForwarded(feedCalls, appView, p, 'app.bsky.feed.getFeed').jwtPayload?.aud).toBe(split.did)
    })
  })

  test('an unknown feed: the AppView lookup error comes back, nothing is forwarded', async () => {
    await onBoth(async (p) => {
      const uri = `at://${p.did}/app.bsky.feed.generator/no-such-feed`
      const { res, seen } = await capture(() => xget(p, 'app.bsky.feed.getFeed', { feed: uri }, p.token))
      expectError(res, 400, 'RecordNotFound')
      expect(seen.filter((r) => r.nsid === 'app.bsky.feed.getFeed')).toEqual([])
    })
  })
})
