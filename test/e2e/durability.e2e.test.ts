/**
 * Durability: everything a client saw acknowledged survives a full restart of
 * the Worker (same persisted D1/R2/KV/DO state), and new writes continue the
 * same commit chain.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { type PdsProcess, startPds, stopPds } from './harness'
import {
  createSession,
  expectStatus,
  listAllRecords,
  post,
  rkeyOf,
  type Session,
  verifyRepoCar,
  xget,
  xpost,
} from './xrpc-client'

let pds: PdsProcess
let session: Session
const written: { uri: string; cid: string; commit: { cid: string; rev: string } }[] = []
let headBefore: { cid: string; rev: string }
let recordsBefore: Map<string, string>

beforeAll(async () => {
  pds = await startPds()
  session = await createSession(pds, pds.handle, pds.password)
}, 120_000)

afterAll(async () => {
  await stopPds(pds)
})

const latest = async (): Promise<{ cid: string; rev: string }> =>
  expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body

test('write records, then restart the server', async () => {
  for (let i = 0; i < 5; i++) {
    const res = await xpost(pds, 'com.atproto.repo.createRecord', {
      repo: pds.did,
      collection: 'app.bsky.feed.post',
      record: post(`durable ${i}`),
    }, session.accessJwt)
    written.push(expectStatus(res, 200).body)
  }
  expectStatus(await xpost(pds, 'com.atproto.repo.putRecord', {
    repo: pds.did,
    collection: 'app.bsky.actor.profile',
    rkey: 'self',
    record: { $type: 'app.bsky.actor.profile', displayName: 'Durable Alice' },
  }, session.accessJwt), 200)
  headBefore = await latest()
  recordsBefore = await listAllRecords(pds, pds.did)
  expect(recordsBefore.size).toBe(6)
  await pds.restart()
}, 120_000)

test('after restart: same head, same records, same CAR', async () => {
  expect(await latest()).toEqual(headBefore)
  for (const w of written) {
    const res = await xget(pds, 'com.atproto.repo.getRecord', {
      repo: pds.did,
      collection: 'app.bsky.feed.post',
      rkey: rkeyOf(w.uri),
    })
    expect(expectStatus(res, 200).body.cid).toBe(w.cid)
  }
  expect(await listAllRecords(pds, pds.did)).toEqual(recordsBefore)
  const car = expectStatus(await xget(pds, 'com.atproto.sync.getRepo', { did: pds.did }), 200)
  const repo = await verifyRepoCar(car.bytes, pds.did, pds.didKey)
  expect(repo.root).toBe(headBefore.cid)
  expect(new Map([...repo.records].sort())).toEqual(new Map([...recordsBefore].sort()))
})

test('after restart: the old session still works (refresh token persisted)', async () => {
  expectStatus(await xget(pds, 'com.atproto.server.getSession', undefined, session.accessJwt), 200)
  const res = expectStatus(await xpost(pds, 'com.atproto.server.refreshSession', undefined, session.refreshJwt), 200)
  session = { ...session, accessJwt: res.body.accessJwt, refreshJwt: res.body.refreshJwt }
})

test('after restart: new writes continue the chain', async () => {
  const res = await xpost(pds, 'com.atproto.repo.createRecord', {
    repo: pds.did,
    collection: 'app.bsky.feed.post',
    record: post('after restart'),
  }, session.accessJwt)
  const body = expectStatus(res, 200).body
  expect(body.commit.rev > headBefore.rev).toBe(true)
  const head = await latest()
  expect(head).toEqual(body.commit)
  const car = expectStatus(await xget(pds, 'com.atproto.sync.getRepo', { did: pds.did }), 200)
  const repo = await verifyRepoCar(car.bytes, pds.did, pds.didKey)
  expect(repo.rev).toBe(head.rev)
  expect(repo.records.size).toBe(7)
  expect(repo.records.get(`app.bsky.feed.post/${rkeyOf(body.uri)}`)).toBe(body.cid)
  // The new rkey (a TID) sorts after every pre-restart one.
  for (const w of written) expect(rkeyOf(body.uri) > rkeyOf(w.uri)).toBe(true)
})

test('a second restart right after a write loses nothing', async () => {
  const res = await xpost(pds, 'com.atproto.repo.createRecord', {
    repo: pds.did,
    collection: 'app.bsky.feed.post',
    record: post('just before restart'),
  }, session.accessJwt)
  const body = expectStatus(res, 200).body
  await pds.restart()
  expect(await latest()).toEqual(body.commit)
  const got = await xget(pds, 'com.atproto.repo.getRecord', {
    repo: pds.did,
    collection: 'app.bsky.feed.post',
    rkey: rkeyOf(body.uri),
  })
  expect(expectStatus(got, 200).body.cid).toBe(body.cid)
}, 120_000)

test('the same state started as another identity is refused, and left as it was', async () => {
  const head = await latest()
  await pds.stop()
  // What `npm run dev` on another port used to do: a new did:web over the old database.
  const other = await startPds({ persistDir: pds.persistDir, signingKeyHex: pds.signingKeyHex })
  try {
    expect(other.did).not.toBe(pds.did)
    for (const res of [
      await xget(other, 'com.atproto.server.describeServer', {}),
      await xpost(other, 'com.atproto.server.createSession', { identifier: pds.handle, password: pds.password }),
      await xget(other, 'com.atproto.sync.getLatestCommit', { did: pds.did }),
    ]) {
      expect(res.status).toBe(500)
      expect(res.body.error).toBe('InternalServerError')
      expect(res.body.message).toContain(`configured as ${other.did}`)
      expect(res.body.message).toContain(`holds the account ${pds.did}`)
    }
  } finally {
    await other.stop()
  }
  await pds.restart()
  expect(await latest()).toEqual(head)
  const res = await xpost(pds, 'com.atproto.repo.createRecord', {
    repo: pds.did,
    collection: 'app.bsky.feed.post',
    record: post('after the other identity'),
  }, session.accessJwt)
  expect(expectStatus(res, 200).body.commit.rev > head.rev).toBe(true)
}, 180_000)
