/**
 * XRPC proxying ("pipethrough") end to end, what is forwarded and how: calls
 * the PDS does not serve go to the configured AppView, or to the service an
 * atproto-proxy header names, with path, query, body and the allowed headers
 * unchanged and a fresh service JWT, and the upstream answer comes back as the
 * reference PDS passes it (pipethrough.js in @atproto/pds 0.5.35).
 *
 * Every request also goes to the reference PDS (helpers/proxy-fixture.ts):
 * each expectation is checked against both servers, so a drift of the
 * reference shows up as a failure labelled [ref]. Who may proxy, and which
 * audience a token names, is proxy-auth.e2e.test.ts.
 */
import { describe, expect, test } from 'bun:test'
import { gzipSync } from 'node:zlib'
import type { PdsProcess } from './harness'
import { BYTES_NSID, type EchoService, fillerBytes, sha256Hex } from './helpers/echo-service'
import { expectForwarded, type ProxyServers, send, useProxyServers } from './helpers/proxy-fixture'
import type { Peer } from './helpers/reference-peer'
import { expectStatus, expectXrpcError, request } from './xrpc-client'

let appView: EchoService, second: EchoService, split: EchoService, noDoc: EchoService, pds: PdsProcess, ours: Peer
let onBoth: ProxyServers['onBoth'], capture: ProxyServers['capture']
useProxyServers((s) => ({ appView, second, split, noDoc, pds, ours, onBoth, capture } = s))

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
            expectXrpcError(res, 400, 'InvalidRequest', message)
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
      expectXrpcError(
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
      expectXrpcError(res, 400, 'InvalidRequest', 'XRPC requests only supports GET and POST')
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
        expectXrpcError(res, c.want[0], c.want[1], c.want[2])
      })
      second.unscript()
    })
  }
})
