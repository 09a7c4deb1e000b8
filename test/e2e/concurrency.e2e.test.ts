/**
 * Concurrent writers: 50 createRecord calls in flight at once must all land,
 * each in its own commit, and the commits must form one linear history (no
 * lost update, no fork): distinct revs, the head is the newest, and the repo
 * still verifies with every record in it.
 */
import { expect, test } from 'bun:test'
import { type PdsProcess } from './harness'
import { usePds } from './use-pds'
import {
  createSession,
  expectStatus,
  listAllRecords,
  post,
  show,
  verifyRepoCar,
  xget,
  xpost,
} from './xrpc-client'

let pds: PdsProcess
let token: string

usePds((started, accessJwt) => {
  pds = started
  token = accessJwt
})

const N = 50

test(`${N} concurrent createRecord calls → ${N} records in a linear chain of commits`, async () => {
  const before = expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body
  const results = await Promise.all(
    Array.from({ length: N }, (_, i) =>
      xpost(pds, 'com.atproto.repo.createRecord', {
        repo: pds.did,
        collection: 'app.bsky.feed.post',
        record: post(`concurrent ${i}`),
      }, token),
    ),
  )
  const failed = results.filter((r) => r.status !== 200)
  expect(failed.map(show)).toEqual([])

  const bodies = results.map((r) => r.body)
  expect(new Set(bodies.map((b) => b.uri)).size).toBe(N)
  const revs = bodies.map((b) => b.commit.rev as string)
  expect(new Set(revs).size).toBe(N)
  expect(new Set(bodies.map((b) => b.commit.cid)).size).toBe(N)
  const sorted = [...revs].sort()
  for (let i = 1; i < sorted.length; i++) expect(sorted[i]! > sorted[i - 1]!).toBe(true)
  expect(sorted[0]! > before.rev).toBe(true)

  const head = expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body
  expect(head.rev).toBe(sorted.at(-1)!)
  const newest = bodies.find((b) => b.commit.rev === head.rev)
  expect(head.cid).toBe(newest.commit.cid)

  const car = expectStatus(await xget(pds, 'com.atproto.sync.getRepo', { did: pds.did }), 200)
  const repo = await verifyRepoCar(car.bytes, pds.did, pds.didKey)
  expect(repo.root).toBe(head.cid)
  for (const b of bodies) {
    const key = b.uri.split('/').slice(3).join('/')
    expect(repo.records.get(key)).toBe(b.cid)
  }
  const listed = await listAllRecords(pds, pds.did)
  expect(listed.size).toBe(N)
  expect(new Map([...listed].sort())).toEqual(new Map([...repo.records].sort()))
}, 120_000)

test("concurrent putRecord to one key: each write gets its own commit, the newest one's value is stored", async () => {
  const rkey = '3kconcurrent2'
  const results = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      xpost(pds, 'com.atproto.repo.putRecord', {
        repo: pds.did,
        collection: 'app.bsky.feed.post',
        rkey,
        record: post(`put ${i}`),
      }, token),
    ),
  )
  expect(results.filter((r) => r.status !== 200).map(show)).toEqual([])
  const revs = results.map((r) => r.body.commit?.rev).filter(Boolean) as string[]
  expect(new Set(revs).size).toBe(revs.length)
  const head = expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body
  expect(head.rev).toBe([...revs].sort().at(-1)!)
  // The stored record is the one written by the newest commit.
  const last = results.find((r) => r.body.commit?.rev === head.rev)!
  const got = expectStatus(
    await xget(pds, 'com.atproto.repo.getRecord', { repo: pds.did, collection: 'app.bsky.feed.post', rkey }),
    200,
  )
  expect(got.body.cid).toBe(last.body.cid)
  const car = expectStatus(await xget(pds, 'com.atproto.sync.getRepo', { did: pds.did }), 200)
  const repo = await verifyRepoCar(car.bytes, pds.did, pds.didKey)
  expect(repo.records.get(`app.bsky.feed.post/${rkey}`)).toBe(last.body.cid)
}, 120_000)
