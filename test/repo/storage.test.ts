/**
 * D1Blockstore (src/repo/storage.ts): prefetchPaths warms exactly the MST
 * nodes on the paths to the given keys, one batched D1 round trip per tree
 * level, so that the lookups of a cold write then cost no D1 query. Checked
 * against lazy loading by @atproto/repo's own MST walk (which loads exactly
 * the path nodes), with a recording cache and the Db round-trip counter.
 */
import { parseCid } from '@atproto/lex-data'
import { Repo, WriteOpAction } from '@atproto/repo'
import { beforeAll, describe, expect, it } from 'vitest'
import { openDb, type Db } from '../../src/db/client'
import { getRoot } from '../../src/db/repo'
import { commitWrites } from '../../src/repo/commit'
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

/** A cold store over a fresh counted Db, with the repo at the current root loaded. */
const coldRepo = async () => {
  const db: Db = openDb(workerEnv.DB)
  const { fetched, cache } = recordingCache()
  const storage = new D1Blockstore(db, cache)
  const root = await getRoot(db)
  const repo = await Repo.load(storage, parseCid(root!.cid))
  return { db, storage, repo, fetched, commitCid: root!.cid }
}

const RECORDS = 600
let rkeys: string[] = []

describe('prefetchPaths', () => {
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

  // Every 15th existing key, plus absent keys before, between and after them.
  const sampleKeys = (): string[] => [
    ...rkeys.filter((_, i) => i % 15 === 0).map((k) => `${THING}/${k}`),
    `${THING}/0000000000000`,
    `${THING}/${rkeys[100]}x`,
    `${THING}/zzzzzzzzzzzzz`,
    'aaa.example.first/aaa',
    'zzz.example.last/zzz',
  ]

  it('loads exactly the nodes a lazy lookup visits, one round trip per level', async () => {
    const keys = sampleKeys()
    const lazy = await coldRepo()
    const lazyValues = []
    for (const key of keys) lazyValues.push((await lazy.repo.data.get(key))?.toString())
    const lazyNodes = lazy.fetched.filter((cid) => cid !== lazy.commitCid)
    expect(lazyValues.filter(Boolean)).toHaveLength(keys.length - 5)

    const warm = await coldRepo()
    const before = warm.db.stats.queries
    await warm.storage.prefetchPaths(warm.repo.commit.data, keys)
    const prefetchQueries = warm.db.stats.queries - before
    const prefetched = warm.fetched.filter((cid) => cid !== warm.commitCid)
    expect([...prefetched].sort()).toEqual([...lazyNodes].sort())
    const levels = (await warm.repo.data.getLayer()) + 1
    expect(prefetchQueries).toBeLessThanOrEqual(levels)
    expect(prefetchQueries).toBeLessThan(lazyNodes.length)

    // The lookups themselves now cost nothing.
    const afterPrefetch = warm.db.stats.queries
    const warmValues = []
    for (const key of keys) warmValues.push((await warm.repo.data.get(key))?.toString())
    expect(warmValues).toEqual(lazyValues)
    expect(warm.db.stats.queries).toBe(afterPrefetch)
  })

  it('formatting a commit for prefetched keys fetches no path node again, only neighbours', async () => {
    const keys = rkeys.filter((_, i) => i % 20 === 3)
    const lazy = await coldRepo()
    for (const rkey of keys) await lazy.repo.data.get(`${THING}/${rkey}`)
    const pathNodes = new Set(lazy.fetched)

    const warm = await coldRepo()
    await warm.storage.prefetchPaths(
      warm.repo.commit.data,
      keys.map((k) => `${THING}/${k}`),
    )
    const fetchedBefore = warm.fetched.length
    const queriesBefore = warm.db.stats.queries
    const ctx = await newRepoContext()
    await warm.repo.formatCommit(
      keys.map((rkey, i) => ({ action: WriteOpAction.Update, collection: THING as never, rkey: rkey as never, record: { $type: THING, value: `new ${i}` } })),
      ctx.signingKey,
    )
    const later = warm.fetched.slice(fetchedBefore)
    expect(later.filter((cid) => pathNodes.has(cid))).toEqual([])
    // Neighbours (for the covering proofs) load lazily, each a query of its own at most.
    expect(warm.db.stats.queries - queriesBefore).toBeLessThanOrEqual(later.length)
  })

  it('ignores keys whose subtree is missing and an empty key list', async () => {
    const warm = await coldRepo()
    const q = warm.db.stats.queries
    await warm.storage.prefetchPaths(warm.repo.commit.data, [])
    expect(warm.db.stats.queries - q).toBe(1)
    // A root that is not in D1: nothing to route, no throw.
    const { cid } = await prepareThing('did:web:x', 'not stored')
    await expect(warm.storage.prefetchPaths(cid, [`${THING}/a`])).resolves.toBeUndefined()
  })
})
