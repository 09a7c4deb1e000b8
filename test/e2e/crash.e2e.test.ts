/**
 * Crashes: `kill -9` of wrangler dev (and its workerd) while four clients are
 * writing, three times, each time restarting on the same persisted state.
 * Nothing a client saw acknowledged may be lost; a write cut off mid-flight
 * is either wholly there or wholly absent; the repo still verifies; and the
 * firehose, replayed from the start, verifies as a relay checks it, gapless,
 * and describes exactly the repo that is stored.
 */
import { describe, expect, test } from 'bun:test'
import type { PdsProcess } from './harness'
import { resolveAtprotoKey, subscribe } from './helpers/firehose-client'
import { foldOps, isCommitFrame, StreamChecker } from './helpers/firehose-verify'
import { usePds } from './use-pds'
import { expectStatus, listAllRecords, post, verifyRepoCar, xget, xpost } from './xrpc-client'

let pds: PdsProcess
let token: string
usePds((started, accessJwt) => {
  pds = started
  token = accessJwt
})

const CRASHES = 3
const CLIENTS = 4
/** Records of our own choosing of key (app.bsky.feed.post keys must be TIDs). */
const COLLECTION = 'com.example.crash'

interface Ack {
  path: string
  cid: string
  commit: string
}

const acknowledged: Ack[] = []
/** Writes sent whose answer never came (cut off by the crash). */
const inFlight = new Set<string>()

/** One client writing posts until it fails (the server went away). */
const writer = async (client: number, round: number, stop: { now: boolean }): Promise<void> => {
  for (let i = 0; !stop.now; i++) {
    const rkey = `c${round}x${client}x${i}`
    const path = `${COLLECTION}/${rkey}`
    inFlight.add(path)
    try {
      const res = await xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, collection: COLLECTION, rkey, record: { $type: COLLECTION, rkey } }, token)
      if (res.status !== 200) return
      acknowledged.push({ path, cid: res.body.cid, commit: res.body.commit.cid })
      inFlight.delete(path)
    } catch {
      return // connection refused or reset: the crash
    }
  }
}

describe('kill -9 mid-write', () => {
  test(`${CRASHES} crashes while ${CLIENTS} clients write: nothing acknowledged is lost, the repo and the replayed firehose verify`, async () => {
    const didKey = await resolveAtprotoKey(pds)
    for (let round = 0; round < CRASHES; round++) {
      const stop = { now: false }
      const writers = Array.from({ length: CLIENTS }, (_, client) => writer(client, round, stop))
      // Let writes flow, then pull the plug while they still do.
      const before = acknowledged.length
      for (let waited = 0; acknowledged.length < before + 10 && waited < 10_000; waited += 50) await Bun.sleep(50)
      await pds.crashAndRestart()
      stop.now = true
      await Promise.all(writers)
    }
    expect(acknowledged.length).toBeGreaterThanOrEqual(CRASHES * 10)

    // Every acknowledged record is there, with its CID.
    const records = await listAllRecords(pds, pds.did)
    const lost = acknowledged.filter((a) => records.get(a.path) !== a.cid)
    expect(lost).toEqual([])
    // Cut-off writes: all or nothing, and the only records are the ones we wrote.
    const written = new Set([...acknowledged.map((a) => a.path), ...inFlight])
    expect([...records.keys()].filter((path) => !written.has(path))).toEqual([])

    // The stored repo verifies and is exactly the record index.
    const car = expectStatus(await xget(pds, 'com.atproto.sync.getRepo', { did: pds.did }), 200)
    const repo = await verifyRepoCar(car.bytes, pds.did, didKey)
    expect(new Map([...repo.records].sort())).toEqual(new Map([...records].sort()))

    // The firehose from the start: gapless, every frame verifies, every acknowledged commit is in it,
    // and its ops fold into exactly the stored records.
    const head = expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body
    const replay = await subscribe(pds, 0)
    try {
      await replay.waitUntil(() => replay.frames.some((f) => String(f.body.commit) === head.cid), `the head commit ${head.cid}`)
      const checker = new StreamChecker({ didKey, repo: pds.did, contiguous: true }, { seq: 0, rev: null })
      expect(await checker.checkAll(replay.frames)).toEqual([])
      const commits = new Set(replay.frames.filter(isCommitFrame).map((f) => String(f.body.commit)))
      expect(acknowledged.filter((a) => !commits.has(a.commit))).toEqual([])
      expect(new Map([...foldOps(replay.frames)].sort())).toEqual(new Map([...records].sort()))
    } finally {
      replay.ws.close()
      await replay.closed
    }

    // And the chain goes on.
    const next = expectStatus(await xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, collection: 'app.bsky.feed.post', record: post('after the crashes') }, token), 200).body
    expect(next.commit.rev > head.rev).toBe(true)
  }, 240_000)
})
