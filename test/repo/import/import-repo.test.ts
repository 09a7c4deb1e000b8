/**
 * importRepo (src/repo/import/import-repo.ts) against the real local D1: what
 * a successful import leaves behind. The repo comes from `@atproto/repo`
 * under the old PDS's key, and that library's verifier reading the same CAR
 * is the oracle: after the import the root, the record index (records,
 * backlinks, blob references) and getRepo's export must say what it says,
 * with exactly the reachable blocks live, no staging rows and no firehose
 * event. Importing the same CAR again changes nothing; a newer CAR applies as
 * a diff (added, updated and deleted records, a block coming back).
 */
import { readCar, verifyRepoCar, WriteOpAction, type RecordWriteOp } from '@atproto/repo'
import { beforeEach, describe, expect, it } from 'vitest'
import { getRoot } from '../../../src/db/repo'
import { importRepo } from '../../../src/repo/import/import-repo'
import { readRecord, streamRepoCar } from '../../../src/repo/reader'
import { collectBytes, liveAndReachableBlocks, recordsOf, workerEnv } from '../fixtures'
import {
  applyWrites,
  buildRepo,
  type BuiltRepo,
  chunkedStream,
  handCar,
  importContext,
  importTables,
  type RecordSpec,
  resetForImport,
  stagingCounts,
  THING,
  things,
} from './fixtures'
import { blobCid, block, expectedIndex, follow, indexRows, like, post, profile, repost, uriOf } from './records'

const FRIEND_POST = 'at://did:plc:friend00000000000000000000/app.bsky.feed.post/3kfriendpost1'

/** Imports `built` into this PDS (its DID document listing `built`'s key); checks the result figures. */
const importBuilt = async (built: BuiltRepo, sizes = [4096]) => {
  const ctx = await importContext(built.keypair.did())
  const result = await importRepo(ctx, chunkedStream(built.car, sizes))
  const car = await readCar(built.car)
  const blocks = car.blocks.entries()
  expect(result).toMatchObject({
    commit: built.repo.cid.toString(),
    rev: built.repo.commit.rev,
    blocks: blocks.length,
    bytes: blocks.reduce((n, b) => n + b.bytes.byteLength, 0),
  })
  return { ctx, result }
}

/**
 * Everything a finished import must satisfy: the root is the CAR's commit,
 * the index is exactly `records` as the reference reads them from the CAR,
 * getRepo exports a repo that verifies under the same key with the same
 * records, only reachable blocks are live, nothing is staged.
 */
const expectImported = async (built: BuiltRepo, records: RecordSpec[]): Promise<void> => {
  const ctx = await importContext(built.keypair.did())
  const reference = recordsOf(await verifyRepoCar(built.car, ctx.did, built.keypair.did()))
  expect([...reference.keys()].sort()).toEqual(records.map((r) => `${r.collection}/${r.rkey}`).sort())
  expect(await indexRows()).toEqual(expectedIndex(ctx.did, records, reference))
  const root = await getRoot(ctx.db)
  expect(root).toMatchObject({ cid: built.repo.cid.toString(), rev: built.repo.commit.rev })
  const exported = await verifyRepoCar(await collectBytes(streamRepoCar(ctx.db, root!)), ctx.did, built.keypair.did())
  expect(exported.commit.cid.toString()).toBe(built.repo.cid.toString())
  expect(recordsOf(exported)).toEqual(reference)
  const { live, reachable } = await liveAndReachableBlocks(ctx.db)
  expect(live).toEqual(reachable)
  expect(await stagingCounts()).toEqual({ blocks: 0, nodes: 0, records: 0 })
}

let did: string
beforeEach(async () => {
  did = await resetForImport()
})

describe('a first import', () => {
  it('a repo of a few hundred records: root, index and export match the reference reading of the CAR', async () => {
    const [avatar, photo1, photo2] = await Promise.all(['avatar', 'photo1', 'photo2'].map(blobCid))
    const records = [
      ...things(300),
      follow('3kfollow00001', 'did:plc:friend00000000000000000000'),
      follow('3kfollow00002', 'did:web:friend.example'),
      block('3kblock000001', 'did:plc:troll000000000000000000000'),
      like('3klike0000001', FRIEND_POST),
      repost('3krepost00001', FRIEND_POST),
      post('3kpost0000001', 'two photos', [photo1, photo2]),
      post('3kpost0000002', 'no photos'),
      profile(avatar),
    ]
    const built = await buildRepo(did, records)
    const { ctx, result } = await importBuilt(built)
    expect(result).toMatchObject({ records: records.length, unchanged: false })
    await expectImported(built, records)
    // The commit chain starts at the imported commit; no firehose event (the account is deactivated).
    const tables = await importTables()
    expect(tables.commit_chain).toMatchObject([{ cid: built.repo.cid.toString(), rev: built.repo.commit.rev, prev: '' }])
    expect(tables.repo_seq).toEqual([])
    expect(new Set((tables.record as { rev: string }[]).map((r) => r.rev))).toEqual(new Set([built.repo.commit.rev]))
    // Records read back as written.
    const followed = await readRecord(ctx.db, uriOf(did, records[300]))
    expect(followed?.value).toEqual(records[300].record)
  })

  it('an empty repo', async () => {
    const built = await buildRepo(did, [])
    const { result } = await importBuilt(built)
    expect(result).toMatchObject({ records: 0, unchanged: false })
    await expectImported(built, [])
  })

  it('blocks in any order, with stray blocks, cut into odd chunks: only the reachable ones are stored', async () => {
    const records = things(120)
    const built = await buildRepo(did, records)
    // Blocks of the earlier version that the newer one dropped are strays in its CAR.
    const newer = await applyWrites(built, [{ action: WriteOpAction.Delete, collection: THING, rkey: 't0007' }])
    const blocks = (await readCar(newer.car)).blocks
    const strays = (await readCar(built.car)).blocks.entries().filter((b) => !blocks.has(b.cid))
    expect(strays.length).toBeGreaterThan(1)
    const messy: BuiltRepo = { ...newer, car: handCar([newer.repo.cid], [...blocks.entries(), ...strays].reverse()) }
    const { result } = await importBuilt(messy, [1, 7, 300])
    expect(result.records).toBe(119)
    await expectImported(newer, records.filter((r) => r.rkey !== 't0007'))
  })

  it('large records: staged over several batches, each statement within D1 limits', async () => {
    // 1.2 MB of records crosses the 1 MB staging batch; a 700 KB record needs more than one statement's worth of SQL.
    const records: RecordSpec[] = [
      ...Array.from({ length: 20 }, (_, i) => ({ collection: THING, rkey: `big${i}`, record: { $type: THING, text: String(i).repeat(60_000) } })),
      { collection: THING, rkey: 'huge', record: { $type: THING, text: 'h'.repeat(700_000) } },
      ...things(50),
    ]
    const built = await buildRepo(did, records)
    const { result } = await importBuilt(built, [65536])
    expect(result.records).toBe(records.length)
    await expectImported(built, records)
  })
})

describe('importing again', () => {
  it('the same CAR twice changes nothing', async () => {
    const built = await buildRepo(did, [...things(50), follow('3kfollow00001', 'did:plc:friend00000000000000000000')])
    await importBuilt(built)
    const before = await importTables()
    const { result } = await importBuilt(built)
    expect(result).toMatchObject({ records: 0, unchanged: true })
    expect(await importTables()).toEqual(before)
  })

  it('a newer CAR applies as a diff: added, updated and deleted records, and their backlinks and blob references', async () => {
    const [photo1, photo2] = await Promise.all(['photo1', 'photo2'].map(blobCid))
    const v1Records = [
      ...things(200),
      follow('3kfollow00001', 'did:plc:friend00000000000000000000'),
      like('3klike0000001', FRIEND_POST),
      post('3kpost0000001', 'a photo', [photo1]),
    ]
    const v1 = await buildRepo(did, v1Records)
    await importBuilt(v1)
    // Both blobs are uploaded meanwhile (as a migration does after importRepo).
    const now = new Date().toISOString()
    await workerEnv.DB.batch(
      [photo1, photo2].map((cid) =>
        workerEnv.DB.prepare('INSERT INTO blob (cid, r2_key, mime_type, size, created_at) VALUES (?, ?, ?, 1000, ?)').bind(cid.toString(), `key-${cid}`, 'image/jpeg', now),
      ),
    )

    const updatedLike = like('3klike0000001', 'at://did:plc:other000000000000000000000/app.bsky.feed.post/3kother')
    const newPost = post('3kpost0000002', 'another photo', [photo2])
    const newFollow = follow('3kfollow00002', 'did:plc:newfriend000000000000000000')
    const changedThing = { collection: THING, rkey: 't0003', record: { $type: THING, n: 'changed' } }
    const writes: RecordWriteOp[] = [
      { action: WriteOpAction.Delete, collection: 'app.bsky.graph.follow', rkey: '3kfollow00001' },
      { action: WriteOpAction.Delete, collection: 'app.bsky.feed.post', rkey: '3kpost0000001' },
      { action: WriteOpAction.Delete, collection: THING, rkey: 't0100' },
      { ...updatedLike, action: WriteOpAction.Update } as RecordWriteOp,
      { ...changedThing, action: WriteOpAction.Update } as RecordWriteOp,
      { ...newPost, action: WriteOpAction.Create } as RecordWriteOp,
      { ...newFollow, action: WriteOpAction.Create } as RecordWriteOp,
    ]
    const v2 = await applyWrites(v1, writes)
    const gone = new Set(['app.bsky.graph.follow/3kfollow00001', 'app.bsky.feed.post/3kpost0000001', `${THING}/t0100`, `${THING}/t0003`, 'app.bsky.feed.like/3klike0000001'])
    const v2Records = [...v1Records.filter((r) => !gone.has(`${r.collection}/${r.rkey}`)), changedThing, updatedLike, newPost, newFollow]
    const { result } = await importBuilt(v2)
    expect(result).toMatchObject({ records: v2Records.length, unchanged: false })
    await expectImported(v2, v2Records)

    // Unchanged records keep the rev they were written at; changed and new ones get the new rev.
    const revs = Object.fromEntries(
      ((await importTables()).record as { uri: string; rev: string }[]).map((r) => [r.uri, r.rev]),
    )
    expect(revs[uriOf(did, things(1, 5)[0])]).toBe(v1.repo.commit.rev)
    for (const r of [changedThing, updatedLike, newPost, newFollow]) expect(revs[uriOf(did, r)]).toBe(v2.repo.commit.rev)
    // The blob only the deleted post used is marked for collection; the new post's is not.
    const blobs = Object.fromEntries(((await importTables()).blob as { cid: string; dereferenced_at: string | null }[]).map((b) => [b.cid, b.dereferenced_at]))
    expect(blobs[photo1.toString()]).not.toBeNull()
    expect(blobs[photo2.toString()]).toBeNull()
    const chain = (await importTables()).commit_chain as { cid: string; prev: string }[]
    expect(chain).toHaveLength(2)
    expect(chain.find((c) => c.cid === v2.repo.cid.toString())?.prev).toBe(v1.repo.cid.toString())

    // A third version brings back a deleted record unchanged: its block, marked removed, is live again.
    const v3 = await applyWrites(v2, [{ action: WriteOpAction.Create, collection: THING, rkey: 't0100', record: things(1, 100)[0].record }])
    await importBuilt(v3)
    await expectImported(v3, [...v2Records, things(1, 100)[0]])
    const t0100 = (await indexRows()).records.find((r) => r.uri === uriOf(did, things(1, 100)[0]))
    const v1Cid = recordsOf(await verifyRepoCar(v1.car)).get(`${THING}/t0100`)
    expect(t0100?.cid).toBe(v1Cid)
    const row = await workerEnv.DB.prepare('SELECT rev, removed_rev FROM block WHERE cid = ?').bind(v1Cid).first()
    expect(row).toEqual({ rev: v3.repo.commit.rev, removed_rev: null })
  })
})
