/**
 * Oracle: the same requests sent to our PDS and to the official reference PDS
 * (@atproto/pds from test/peers, in a Node 22 child since Bun cannot load it),
 * compared field by field once values that must differ (DIDs, CIDs, TIDs,
 * timestamps, tokens) are normalised away.
 *
 * Known, intended differences are listed where they are allowed, with why.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { type PdsProcess, startPds, stopPds } from './harness'
import { HAVE_REFERENCE, ourPeer, type Peer, type ReferencePds, referencePeer, spawnReference } from './helpers/reference-peer'
import { createSession, expectStatus, type XrpcResponse, xget, xpost } from './xrpc-client'

const HANDLE = 'alice.test'
const PASSWORD = 'oracle-password-1'

let pds: PdsProcess
let refPds: ReferencePds
let ours: Peer
let ref: Peer

// Without the peers (a trimmed checkout) the comparison is skipped, not failed.
beforeAll(async () => {
  if (!HAVE_REFERENCE) return
  const [p, r] = await Promise.all([
    // Like the reference peer, no AppView: unknown methods have nowhere to go.
    startPds({ handle: HANDLE, password: PASSWORD, vars: { BSKY_APPVIEW_URL: '' } }),
    spawnReference({ handle: HANDLE, password: PASSWORD }),
  ])
  pds = p
  refPds = r as ReferencePds
  ours = await ourPeer(pds)
  ref = referencePeer(refPds)
}, 240_000)

afterAll(async () => {
  await Promise.all([stopPds(pds), refPds?.stop()])
})

/** Replaces per-server values so two answers can be compared structurally. */
const normalise = (value: unknown, peer: Peer): unknown => {
  const text = JSON.stringify(value ?? null)
    .replaceAll(peer.did, '<did>')
    .replaceAll(peer.url, '<url>')
    .replace(/\bbaf[a-z2-7]{50,}\b/g, '<cid>')
    .replace(/\/[2-7a-j][2-7a-z]{12}\b/g, '/<tid>')
    .replace(/"[2-7a-j][2-7a-z]{12}"/g, '"<tid>"')
    .replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z/g, '<datetime>')
    .replace(/eyJ[\w-]+\.[\w-]+\.[\w-]+/g, '<jwt>')
  return JSON.parse(text)
}

/** Runs the same request against both servers. */
const both = async (call: (peer: Peer) => Promise<XrpcResponse>): Promise<[XrpcResponse, XrpcResponse]> =>
  Promise.all([call(ours), call(ref)])

/** Status and normalised body must be identical. */
const expectSameAnswer = async (call: (peer: Peer) => Promise<XrpcResponse>): Promise<void> => {
  const [a, b] = await both(call)
  expect({ status: a.status, body: normalise(a.body, ours) }).toEqual({ status: b.status, body: normalise(b.body, ref) })
}

/** Status and error name must be identical (messages come from different validators). */
const expectSameError = async (call: (peer: Peer) => Promise<XrpcResponse>): Promise<void> => {
  const [a, b] = await both(call)
  expect({ status: a.status, error: a.body?.error }).toEqual({ status: b.status, error: b.body?.error })
}

const keys = (v: unknown): string[] => Object.keys((v ?? {}) as object).sort()

/** Key sets must match, except for listed keys one side may have alone. */
const expectSameKeys = (a: unknown, b: unknown, allowed: { oursOnly?: string[]; refOnly?: string[] } = {}): void => {
  const ka = keys(a)
  const kb = keys(b)
  const oursOnly = ka.filter((k) => !kb.includes(k) && !(allowed.oursOnly ?? []).includes(k))
  const refOnly = kb.filter((k) => !ka.includes(k) && !(allowed.refOnly ?? []).includes(k))
  expect({ oursOnly, refOnly }).toEqual({ oursOnly: [], refOnly: [] })
}

const post = (text: string) => ({ $type: 'app.bsky.feed.post', text, createdAt: new Date().toISOString() })

describe.skipIf(!HAVE_REFERENCE)('error answers are identical', () => {
  test('getRecord of a missing record', async () => {
    await expectSameAnswer((p) =>
      xget(p, 'com.atproto.repo.getRecord', { repo: p.did, collection: 'app.bsky.feed.post', rkey: '3zzzzzzzzzzzz' }),
    )
  })

  test('createSession with a wrong password, and with an unknown identifier', async () => {
    await expectSameAnswer((p) => xpost(p, 'com.atproto.server.createSession', { identifier: p.handle, password: 'wrong' }))
    await expectSameAnswer((p) =>
      xpost(p, 'com.atproto.server.createSession', { identifier: 'nobody-here.test', password: 'wrong' }),
    )
  })

  test('an invalid post (no text)', async () => {
    await expectSameAnswer((p) =>
      xpost(p, 'com.atproto.repo.createRecord', {
        repo: p.did,
        collection: 'app.bsky.feed.post',
        record: { $type: 'app.bsky.feed.post', createdAt: new Date().toISOString() },
      }, p.token),
    )
  })

  test('a $type mismatch, an unknown lexicon with validate:true, too many writes', async () => {
    await expectSameAnswer((p) =>
      xpost(p, 'com.atproto.repo.createRecord', {
        repo: p.did,
        collection: 'app.bsky.feed.post',
        record: { ...post('x'), $type: 'app.bsky.feed.like' },
      }, p.token),
    )
    await expectSameAnswer((p) =>
      xpost(p, 'com.atproto.repo.createRecord', {
        repo: p.did,
        collection: 'com.example.oracle.thing',
        record: { a: 1 },
        validate: true,
      }, p.token),
    )
    const writes = Array.from({ length: 201 }, (_, i) => ({
      $type: 'com.atproto.repo.applyWrites#create',
      collection: 'com.example.oracle.bulk',
      rkey: `k${i}`,
      value: { i },
    }))
    await expectSameAnswer((p) => xpost(p, 'com.atproto.repo.applyWrites', { repo: p.did, writes }, p.token))
  })

  test('token and auth errors', async () => {
    await expectSameAnswer((p) => xget(p, 'com.atproto.server.getSession'))
    await expectSameAnswer((p) => xget(p, 'com.atproto.server.getSession', undefined, 'not-a-jwt'))
    await expectSameAnswer((p) => xpost(p, 'com.atproto.server.refreshSession', undefined, p.token))
  })

  test('wrong HTTP method, unknown repo, writing to another repo', async () => {
    await expectSameAnswer((p) => xget(p, 'com.atproto.repo.createRecord', undefined, p.token))
    await expectSameAnswer((p) => xget(p, 'com.atproto.repo.describeRepo', { repo: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa' }))
    await expectSameAnswer((p) => xget(p, 'com.atproto.sync.getRepo', { did: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa' }))
    await expectSameAnswer((p) =>
      xpost(p, 'com.atproto.repo.createRecord', {
        repo: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa',
        collection: 'app.bsky.feed.post',
        record: post('x'),
      }, p.token),
    )
  })

  test('lexicon validation failures have the same status and error name', async () => {
    await expectSameError((p) =>
      xpost(p, 'com.atproto.repo.createRecord', {
        repo: p.did,
        collection: 'app.bsky.feed.post',
        record: { ...post('x'), extra: 1.5 },
      }, p.token),
    )
    await expectSameError((p) => xget(p, 'com.atproto.repo.getRecord', { repo: p.did, collection: 'app.bsky.feed.post' }))
    await expectSameError((p) =>
      xpost(p, 'com.atproto.repo.createRecord', { repo: p.did, collection: 'not_an_nsid', record: { a: 1 } }, p.token),
    )
    await expectSameError((p) =>
      xpost(p, 'com.atproto.repo.createRecord', { repo: p.did, collection: 'com.example.x', rkey: 'bad key', record: {} }, p.token),
    )
  })

  test('an unknown method with no AppView configured: the same 400 "No service configured", authenticated or not', async () => {
    // Both proxy methods they do not serve; the service is chosen before auth.
    for (const token of [undefined, 'ours']) {
      const [a, b] = await both((p) => xget(p, 'com.example.oracle.noSuchMethod', {}, token && p.token))
      expect(a.status).toBe(400)
      expect(a.body).toEqual(b.body)
      expect(a.body).toEqual({ error: 'InvalidRequest', message: 'No service configured for com.example.oracle.noSuchMethod' })
    }
  })
})

describe.skipIf(!HAVE_REFERENCE)('success answers have the same shape', () => {
  test('describeServer', async () => {
    const [a, b] = await both((p) => xget(p, 'com.atproto.server.describeServer'))
    expectStatus(a, 200)
    expectStatus(b, 200)
    expectSameKeys(a.body, b.body)
    expect(typeof a.body.inviteCodeRequired).toBe(typeof b.body.inviteCodeRequired)
  })

  test('createSession and getSession', async () => {
    const [a, b] = await both((p) => xpost(p, 'com.atproto.server.createSession', { identifier: p.handle, password: p.password }))
    expectStatus(a, 200)
    expectStatus(b, 200)
    // The reference returns didDoc only with PDS_ENABLE_DID_DOC_WITH_SESSION; the
    // reference account has an email, ours has none.
    expectSameKeys(a.body, b.body, { oursOnly: ['didDoc'], refOnly: ['email'] })
    const [ga, gb] = await both((p) => xget(p, 'com.atproto.server.getSession', undefined, p.token))
    expectStatus(ga, 200)
    expectStatus(gb, 200)
    expectSameKeys(ga.body, gb.body, { oursOnly: ['didDoc'], refOnly: ['email'] })
  })

  test('refreshSession', async () => {
    const [sa, sb] = await Promise.all([createSession(ours, ours.handle, ours.password), createSession(ref, ref.handle, ref.password)])
    const a = await xpost(ours, 'com.atproto.server.refreshSession', undefined, sa.refreshJwt)
    const b = await xpost(ref, 'com.atproto.server.refreshSession', undefined, sb.refreshJwt)
    expectStatus(a, 200)
    expectStatus(b, 200)
    expectSameKeys(a.body, b.body, { oursOnly: ['didDoc'], refOnly: ['email'] })
  })

  test('createRecord, putRecord (incl. no-op), deleteRecord (incl. missing)', async () => {
    const record = { $type: 'app.bsky.feed.post', text: 'same on both', createdAt: '2024-01-01T00:00:00.000Z' }
    await expectSameAnswer((p) =>
      xpost(p, 'com.atproto.repo.createRecord', { repo: p.did, collection: 'app.bsky.feed.post', record }, p.token),
    )
    const put = (p: Peer) =>
      xpost(p, 'com.atproto.repo.putRecord', {
        repo: p.did,
        collection: 'app.bsky.feed.post',
        rkey: '3koracleput22',
        record,
      }, p.token)
    await expectSameAnswer(put)
    await expectSameAnswer(put) // identical put: no commit in the answer
    const del = (p: Peer) =>
      xpost(p, 'com.atproto.repo.deleteRecord', { repo: p.did, collection: 'app.bsky.feed.post', rkey: '3koracleput22' }, p.token)
    await expectSameAnswer(del)
    await expectSameAnswer(del) // already gone: {} (no commit)
  })

  test('applyWrites results', async () => {
    const A = 'com.atproto.repo.applyWrites'
    await expectSameAnswer((p) =>
      xpost(p, A, {
        repo: p.did,
        writes: [
          { $type: `${A}#create`, collection: 'com.example.oracle.thing', rkey: 'k1', value: { a: 1 } },
          { $type: `${A}#update`, collection: 'com.example.oracle.thing', rkey: 'k1', value: { a: 2 } },
          { $type: `${A}#create`, collection: 'com.example.oracle.thing', rkey: 'k2', value: { b: 1 } },
          { $type: `${A}#delete`, collection: 'com.example.oracle.thing', rkey: 'k2' },
        ],
      }, p.token),
    )
  })

  test('listRecords', async () => {
    await expectSameAnswer((p) =>
      xget(p, 'com.atproto.repo.listRecords', { repo: p.did, collection: 'com.example.oracle.thing', limit: 5 }),
    )
    await expectSameAnswer((p) => xget(p, 'com.atproto.repo.listRecords', { repo: p.did, collection: 'com.example.oracle.none' }))
  })

  test('describeRepo and sync status', async () => {
    const [a, b] = await both((p) => xget(p, 'com.atproto.repo.describeRepo', { repo: p.did }))
    expectStatus(a, 200)
    expectStatus(b, 200)
    expectSameKeys(a.body, b.body)
    expect([...a.body.collections].sort()).toEqual([...b.body.collections].sort())
    await expectSameAnswer((p) => xget(p, 'com.atproto.sync.getRepoStatus', { did: p.did }))
    const [la, lb] = await both((p) => xget(p, 'com.atproto.sync.getLatestCommit', { did: p.did }))
    expect(normalise(la.body, ours)).toEqual(normalise(lb.body, ref))
  })
})
