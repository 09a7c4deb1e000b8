/**
 * The repo head a write starts from (src/repo/head.ts):
 * - loadPaths decodes exactly the MST nodes on the paths to the given keys,
 *   one batched D1 round trip per tree level, so the lookups of a cold write
 *   then cost no D1 query; checked against lazy loading by @atproto/repo's
 *   own MST walk, with a recording cache and the Db round-trip counter;
 * - formatCommit makes the same tree, blocks, proofs and removals as
 *   @atproto/repo's Repo.formatCommit for the same writes (independent code);
 * - the head an isolate remembers is used only while it is the root in D1.
 */
import { parseCid } from '@atproto/lex-data'
import { Repo, WriteOpAction } from '@atproto/repo'
import { beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { openDb, type Db } from '../../src/db/client'
import { getRoot } from '../../src/db/repo'
import { commitWrites } from '../../src/repo/commit'
import { forgetHead, formatCommit, headAt, loadPaths } from '../../src/repo/head'
import { prepareUpdate } from '../../src/repo/prepare'
import { blockCache, D1Blockstore } from '../../src/repo/storage'
import { newRepoContext, prepareThing, THING, wipeDatabase, workerEnv } from './fixtures'

/** A cache that starts cold and records every block D1 had to supply. */
const recordingCache = () => {
  const map = new Map<string, Uint8Array>()
  const fetched: string[] = []
  const cache = {
    get: (cid: string) => map.get(cid),
    set: (cid: string, bytes: Uint8Array) => {
      fetched.push(cid)
      map.set(cid, bytes)
    },
  }
  return { fetched, cache: cache as unknown as typeof blockCache }
}

/** A cold head over a fresh counted Db at the current root (nothing remembered). */
const coldHead = async () => {
  forgetHead()
  const db: Db = openDb(workerEnv.DB)
  const { fetched, cache } = recordingCache()
  const root = await getRoot(db)
  const head = await headAt(db, parseCid(root!.cid), cache)
  return { db, head, fetched, commitCid: root!.cid }
}

/** The same root through @atproto/repo's own loader, on a cold cache. */
const coldLibraryRepo = async () => {
  const db: Db = openDb(workerEnv.DB)
  const { fetched, cache } = recordingCache()
  const root = await getRoot(db)
  const repo = await Repo.load(new D1Blockstore(db, cache), parseCid(root!.cid))
  return { repo, fetched, commitCid: root!.cid }
}

const RECORDS = 600
let rkeys: string[] = []

describe('the head a write starts from', () => {
  beforeAll(async () => {
    await wipeDatabase()
    const ctx = await newRepoContext()
    rkeys = []
    for (let batch = 0; batch < RECORDS / 200; batch++) {
      const writes = await Promise.all(Array.from({ length: 200 }, (_, i) => prepareThing(ctx.did, batch * 200 + i)))
      rkeys.push(...writes.map((w) => w.rkey))
      await commitWrites(ctx, writes)
    }
  }, 120_000)

  beforeEach(() => forgetHead())

  // Every 15th existing key, plus absent keys before, between and after them.
  const sampleKeys = (): string[] => [
    ...rkeys.filter((_, i) => i % 15 === 0).map((k) => `${THING}/${k}`),
    `${THING}/0000000000000`,
    `${THING}/${rkeys[100]}x`,
    `${THING}/zzzzzzzzzzzzz`,
    'aaa.example.first/aaa',
    'zzz.example.last/zzz',
  ]

  it('loadPaths loads exactly the nodes a lazy lookup visits, one round trip per level', async () => {
    const keys = sampleKeys()
    const lazy = await coldLibraryRepo()
    const lazyValues = []
    for (const key of keys) lazyValues.push((await lazy.repo.data.get(key))?.toString())
    const lazyNodes = lazy.fetched.filter((cid) => cid !== lazy.commitCid)
    expect(lazyValues.filter(Boolean)).toHaveLength(keys.length - 5)

    const warm = await coldHead()
    const before = warm.db.stats.queries
    await loadPaths(warm.head, keys)
    const queries = warm.db.stats.queries - before
    const loaded = warm.fetched.filter((cid) => cid !== warm.commitCid)
    expect([...loaded].sort()).toEqual([...lazyNodes].sort())
    const levels = (await warm.head.data.getLayer()) + 1
    expect(queries).toBeLessThanOrEqual(levels)
    expect(queries).toBeLessThan(lazyNodes.length)

    // The lookups themselves now cost nothing.
    const afterLoad = warm.db.stats.queries
    const warmValues = []
    for (const key of keys) warmValues.push((await warm.head.data.get(key))?.toString())
    expect(warmValues).toEqual(lazyValues)
    expect(warm.db.stats.queries).toBe(afterLoad)
  })

  it('formatCommit after loadPaths fetches no path node again, and makes what Repo.formatCommit makes', async () => {
    const keys = rkeys.filter((_, i) => i % 20 === 3)
    const ctx = await newRepoContext()
    const writes = await Promise.all(
      keys.map((rkey, i) => prepareUpdate({ did: ctx.did, collection: THING, rkey, record: { $type: THING, value: `new ${i}` }, validate: false })),
    )
    const lazy = await coldLibraryRepo()
    for (const rkey of keys) await lazy.repo.data.get(`${THING}/${rkey}`)
    const pathNodes = new Set(lazy.fetched)
    const expected = await lazy.repo.formatCommit(
      writes.map((w) => ({ action: WriteOpAction.Update, collection: w.collection as never, rkey: w.rkey as never, record: w.record })),
      ctx.signingKey,
    )

    const warm = await coldHead()
    await loadPaths(
      warm.head,
      keys.map((k) => `${THING}/${k}`),
    )
    const fetchedBefore = warm.fetched.length
    const queriesBefore = warm.db.stats.queries
    const ours = await formatCommit(warm.head, writes, ctx.signingKey)
    const later = warm.fetched.slice(fetchedBefore)
    expect(later.filter((cid) => pathNodes.has(cid))).toEqual([])
    // Neighbours (for the covering proofs) load lazily, each a query of its own at most.
    expect(warm.db.stats.queries - queriesBefore).toBeLessThanOrEqual(later.length)

    // Same tree and blocks; only the commit block differs (its rev comes from the clock).
    const withoutCommit = (cids: string[], commit: string) => cids.filter((c) => c !== commit).sort()
    expect((await ours.next.data.getPointer()).toString()).toBe(await expectedData(expected))
    expect(withoutCommit(ours.newBlocks.cids().map(String), ours.cid.toString())).toEqual(withoutCommit(expected.newBlocks.cids().map(String), expected.cid.toString()))
    expect(withoutCommit(ours.relevantBlocks.cids().map(String), ours.cid.toString())).toEqual(
      withoutCommit(expected.relevantBlocks.cids().map(String), expected.cid.toString()),
    )
    expect(ours.removedCids.toList().map(String).sort()).toEqual(expected.removedCids.toList().map(String).sort())
    expect(ours.since).toBe(expected.since)
    expect(ours.rev > expected.since!).toBe(true)
  })

  it('the remembered head is used only while it is the root in D1', async () => {
    const ctx = await newRepoContext()
    const before = await getRoot(ctx.db)
    await commitWrites(ctx, [await prepareThing(ctx.did, 'remembered')])
    const after = await getRoot(ctx.db)
    const db = openDb(workerEnv.DB)
    const current = await headAt(db, parseCid(after!.cid))
    expect(current.cid.toString()).toBe(after!.cid)
    // Reused: no commit block read, nothing loaded.
    expect(db.stats.queries).toBe(0)
    expect(await headAt(db, parseCid(after!.cid))).toBe(current)
    // Another root (another isolate committed, or an older one asked for): loaded from blocks.
    const older = await headAt(db, parseCid(before!.cid))
    expect(older).not.toBe(current)
    expect(older.cid.toString()).toBe(before!.cid)
  })
})

/** The data root the library's commit points at. */
const expectedData = async (formatted: { newBlocks: { get(cid: unknown): Uint8Array | undefined }; cid: unknown }): Promise<string> => {
  const { decode } = await import('@atproto/lex-cbor')
  const commit = decode(formatted.newBlocks.get(formatted.cid)!) as unknown as { data: { toString(): string } }
  return commit.data.toString()
}
