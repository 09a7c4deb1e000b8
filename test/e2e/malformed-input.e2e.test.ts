/**
 * Hostile and careless input, table-driven over EVERY XRPC method we carry a
 * lexicon for (served here or forwarded): wrong verbs, garbage params,
 * broken JSON, bodies where none belong, values outside the atproto data
 * model, absurd nesting, garbage credentials. Whatever the input, the answer
 * is never a 5xx and every error is a JSON `{error, message}`.
 *
 * Then the specific refusals behind issue 14: malformed $link/$bytes values
 * (the interop vectors' invalid data-model cases) are never stored, a body
 * sent to a method that takes none is refused, an empty upload is refused,
 * deep nesting is named as such, and a token for another subject is invalid
 * everywhere. Forwarding is switched off (no AppView), so unserved methods
 * answer 400 locally and nothing leaves loopback.
 */
import { describe, expect, test } from 'bun:test'
import invalidDataModel from '../vectors/interop/data-model/data-model-invalid.json'
import { methodSchemas } from '../../src/lexicons/registry'
import type { PdsProcess } from './harness'
import { usePds } from './use-pds'
import { expectStatus, expectXrpcError, post, request, signHs256, xget, xpost, type XrpcResponse } from './xrpc-client'

let pds: PdsProcess
let token: string
usePds(
  (started, accessJwt) => {
    pds = started
    token = accessJwt
  },
  { vars: { BSKY_APPVIEW_URL: '', MOD_SERVICE_URL: '' } },
)

const METHODS = Object.values(methodSchemas).map((m) => ({ nsid: m.nsid, type: m.type }))

/** JSON nested `levels` deep: {"a":{"a":...}}. */
const nested = (levels: number): string => '{"a":'.repeat(levels) + '1' + '}'.repeat(levels)

interface Probe {
  what: string
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  query?: string
  headers?: Record<string, string>
  body?: string
}

/** The malformed requests every method gets. */
const PROBES: Probe[] = [
  { what: 'wrong verb (PUT)', method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } },
  { what: 'DELETE', method: 'DELETE' },
  { what: 'garbage params', method: 'GET', query: '?limit=abc&cursor=%ff%fe&did=notadid&repo=!!&uri=x&cid=zzz&since=9&collection=..&rkey=/' },
  { what: 'repeated params', method: 'GET', query: '?did=a&did=b&limit=1&limit=2' },
  { what: 'a __proto__ param', method: 'GET', query: '?__proto__=1&constructor=2' },
  { what: 'broken JSON', method: 'POST', body: '{', headers: { 'content-type': 'application/json' } },
  { what: 'JSON array', method: 'POST', body: '[1,2,3]', headers: { 'content-type': 'application/json' } },
  { what: 'wrong content type', method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } },
  { what: 'bogus $link', method: 'POST', body: '{"repo":{"$link":"garbage"},"x":{"$bytes":"!!!!"}}', headers: { 'content-type': 'application/json' } },
  { what: '10,000 levels of nesting', method: 'POST', body: nested(10_000), headers: { 'content-type': 'application/json' } },
  { what: 'garbage bearer', method: 'GET', headers: { authorization: 'Bearer not.a.jwt' } },
  { what: 'DPoP without proof', method: 'POST', body: '{}', headers: { authorization: 'DPoP abc', 'content-type': 'application/json' } },
  { what: 'three-part authorization', method: 'GET', headers: { authorization: 'Bearer a b' } },
]

const isXrpcError = (res: XrpcResponse): boolean =>
  typeof res.body?.error === 'string' && typeof res.body?.message === 'string'

describe('every method, every malformed request', () => {
  test(`${METHODS.length} methods x ${PROBES.length} probes: never a 5xx, every error is {error, message}`, async () => {
    expect(METHODS.length).toBeGreaterThan(80)
    const bad: string[] = []
    for (const { nsid } of METHODS) {
      for (const probe of PROBES) {
        const res = await request(pds, `/xrpc/${nsid}${probe.query ?? ''}`, { method: probe.method, headers: probe.headers, body: probe.body })
        const where = `${probe.what} ${probe.method} ${nsid}`
        if (res.status >= 500) bad.push(`${where}: ${res.status} ${res.text.slice(0, 200)}`)
        else if (res.status >= 400 && !isXrpcError(res)) bad.push(`${where}: ${res.status} without {error, message}: ${res.text.slice(0, 200)}`)
      }
    }
    expect(bad).toEqual([])
  }, 300_000)

  test('the same bodies with a valid token on every procedure that takes JSON or nothing: refused, never a 5xx', async () => {
    const bad: string[] = []
    const bodies = PROBES.filter((p) => p.method === 'POST' && !p.headers?.authorization)
    // Methods whose input is any bytes (a blob, a CAR) are exercised by their own suites.
    const rawInput = new Set(['com.atproto.repo.uploadBlob', 'com.atproto.repo.importRepo'])
    for (const { nsid } of METHODS.filter((m) => m.type === 'procedure' && !rawInput.has(m.nsid))) {
      for (const probe of bodies) {
        const res = await request(pds, `/xrpc/${nsid}`, { method: 'POST', headers: { ...probe.headers, authorization: `Bearer ${token}` }, body: probe.body })
        if (res.status >= 500 || (res.status >= 400 && !isXrpcError(res))) bad.push(`${probe.what} ${nsid}: ${res.status} ${res.text.slice(0, 200)}`)
        if (res.status < 400) bad.push(`${probe.what} ${nsid}: accepted (${res.status})`)
      }
    }
    expect(bad).toEqual([])
  }, 300_000)
})

describe('values outside the data model are never stored', () => {
  const create = (record: unknown) =>
    xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, collection: 'com.example.lexvalue', record }, token)

  test('the interop vectors of invalid data-model values, as records: 400 InvalidRequest, nothing written', async () => {
    const head = expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body.cid
    const accepted: string[] = []
    for (const vector of invalidDataModel as { note: string; json: unknown }[]) {
      // The vector is the record (the top-level case is a record that is not an object).
      const record = typeof vector.json === 'object' && vector.json !== null ? { $type: 'com.example.lexvalue', ...vector.json } : vector.json
      const res = await create(record)
      if (res.status !== 400 || res.body?.error !== 'InvalidRequest') accepted.push(`${vector.note}: ${res.status} ${res.text.slice(0, 200)}`)
    }
    expect(accepted).toEqual([])
    expect(expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body.cid).toBe(head)
  })

  test('the three shapes from the report, in a record, in applyWrites and in preferences', async () => {
    const cid = 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm'
    for (const value of [{ $link: 'garbage' }, { $bytes: '!!!!' }, { $link: cid, x: 1 }]) {
      expectXrpcError(await create({ $type: 'com.example.lexvalue', value }), 400, 'InvalidRequest', /Invalid data model value/)
      expectXrpcError(
        await xpost(pds, 'com.atproto.repo.applyWrites', {
          repo: pds.did,
          writes: [{ $type: 'com.atproto.repo.applyWrites#create', collection: 'com.example.lexvalue', value: { value } }],
        }, token),
        400,
        'InvalidRequest',
      )
      expectXrpcError(
        await xpost(pds, 'app.bsky.actor.putPreferences', { preferences: [{ $type: 'app.bsky.actor.defs#adultContentPref', enabled: true, extra: value }] }, token),
        400,
        'InvalidRequest',
      )
    }
    // A well-formed link is a CID, and is stored as one.
    const ok = expectStatus(await create({ $type: 'com.example.lexvalue', value: { $link: cid } }), 200).body
    const back = expectStatus(await xget(pds, 'com.atproto.repo.getRecord', { repo: pds.did, collection: 'com.example.lexvalue', rkey: ok.uri.split('/').pop() }), 200)
    expect(back.body.value.value).toEqual({ $link: cid })
  })

  test('10,000 levels of nesting: a 400 that says so, not a stack overflow', async () => {
    const res = await request(pds, '/xrpc/com.atproto.repo.createRecord', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: `{"repo":"${pds.did}","collection":"com.example.deep","record":${nested(10_000)}}`,
    })
    expectXrpcError(res, 400, 'InvalidRequest', /too deeply nested/)
    // A reasonable depth is fine.
    const okRes = await request(pds, '/xrpc/com.atproto.repo.createRecord', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: `{"repo":"${pds.did}","collection":"com.example.deep","record":${nested(100)}}`,
    })
    expectStatus(okRes, 200)
  })
})

describe('bodies where none belong, and empty uploads', () => {
  test('refreshSession and deleteSession refuse a body (as the reference), an empty one is fine', async () => {
    const session = expectStatus(await xpost(pds, 'com.atproto.server.createSession', { identifier: pds.handle, password: pds.password }), 200).body
    for (const nsid of ['com.atproto.server.refreshSession', 'com.atproto.server.deleteSession']) {
      const res = await request(pds, `/xrpc/${nsid}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${session.refreshJwt}`, 'content-type': 'application/json' },
        body: '{',
      })
      expectXrpcError(res, 400, 'InvalidRequest', 'A request body was provided when none was expected')
    }
    const refreshed = await request(pds, '/xrpc/com.atproto.server.refreshSession', {
      method: 'POST',
      headers: { authorization: `Bearer ${session.refreshJwt}`, 'content-length': '0' },
    })
    expectStatus(refreshed, 200)
  })

  test('an empty uploadBlob body is refused, not stored as a 0-byte blob', async () => {
    const res = await request(pds, '/xrpc/com.atproto.repo.uploadBlob', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'image/png' },
      body: new Uint8Array(0),
    })
    expectXrpcError(res, 400, 'InvalidRequest')
  })
})

describe('a token for another subject', () => {
  test('signed with our secret but naming another DID: InvalidToken everywhere, nothing changes', async () => {
    const now = Math.floor(Date.now() / 1000)
    const forged = signHs256(
      pds.jwtSecret,
      { scope: 'com.atproto.access', sub: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa', aud: pds.did, iat: now, exp: now + 600 },
      { typ: 'at+jwt' },
    )
    const calls: [string, Promise<XrpcResponse>][] = [
      ['getSession', xget(pds, 'com.atproto.server.getSession', undefined, forged)],
      ['listAppPasswords', xget(pds, 'com.atproto.server.listAppPasswords', undefined, forged)],
      ['createAppPassword', xpost(pds, 'com.atproto.server.createAppPassword', { name: 'forged' }, forged)],
      ['putPreferences', xpost(pds, 'app.bsky.actor.putPreferences', { preferences: [] }, forged)],
      ['createRecord', xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, collection: 'app.bsky.feed.post', record: post('x') }, forged)],
      [
        'uploadBlob',
        request(pds, '/xrpc/com.atproto.repo.uploadBlob', { method: 'POST', headers: { authorization: `Bearer ${forged}`, 'content-type': 'image/png' }, body: new Uint8Array([1, 2, 3]) }),
      ],
    ]
    for (const [name, call] of calls) {
      const res = await call
      if (res.status !== 400 || res.body?.error !== 'InvalidToken') throw new Error(`${name}: expected 400 InvalidToken, got ${res.status} ${res.text}`)
    }
    const passwords = expectStatus(await xget(pds, 'com.atproto.server.listAppPasswords', undefined, token), 200).body.passwords
    expect(passwords.map((p: { name: string }) => p.name)).not.toContain('forged')
  })
})
