/**
 * src/db/repo.ts against the real schema: the commit batch is refused as a
 * whole when it was built on a stale root (UNIQUE commit_chain.prev) or does
 * not increase the rev (the trigger in migrations/0001), removed blocks are
 * marked rather than deleted, and the statements stay inside D1's limit of
 * 100 bound parameters however many writes a commit holds.
 */
import { parseCid } from '@atproto/lex-data'
import { Repo, WriteOpAction } from '@atproto/repo'
import { beforeEach, describe, expect, it } from 'vitest'
import { openDb } from '../../src/db/client'
import { deleteDueRemovedBlocks } from '../../src/db/maintenance'
import { type CommitWrite, getRepoCreatedAt, getRoot, isStaleCommitError, writeCommit } from '../../src/db/repo'
import { encodeCommitEvent } from '../../src/firehose/events'
import { commitWrites, type RepoContext } from '../../src/repo/commit'
import { prepareCreate, prepareDelete, type PreparedCreate } from '../../src/repo/prepare'
import { D1Blockstore } from '../../src/repo/storage'
import {
  ensureGenesis,
  liveAndReachableBlocks,
  linearChain,
  newRepoContext,
  prepareThing,
  recordsOf,
  rowCounts,
  sleep,
  verifyStoredRepo,
  wipeDatabase,
  workerEnv,
} from '../repo/fixtures'

/** Builds (but does not write) a commit of `creates` on the current root, as commitWrites does. */
const buildCommit = async (ctx: RepoContext, creates: PreparedCreate[]): Promise<CommitWrite> => {
  const root = await getRoot(ctx.db)
  if (!root) throw new Error('no root')
  const repo = await Repo.load(new D1Blockstore(ctx.db), parseCid(root.cid))
  const commit = await repo.formatCommit(
    creates.map((w) => ({ action: WriteOpAction.Create, collection: w.collection as never, rkey: w.rkey as never, record: w.record })),
    ctx.signingKey,
  )
  const now = new Date().toISOString()
  const event = await encodeCommitEvent({
    did: ctx.did,
    commit: commit.cid,
    rev: commit.rev,
    since: commit.since,
    prevData: repo.commit.data,
    ops: creates.map((w) => ({ action: 'create', path: `${w.collection}/${w.rkey}`, cid: w.cid })),
    blocks: commit.relevantBlocks,
    time: now,
  })
  return {
    did: ctx.did,
    cid: commit.cid.toString(),
    rev: commit.rev,
    prev: root.cid,
    now,
    newBlocks: [...commit.newBlocks].map(([cid, bytes]) => ({ cid: cid.toString(), bytes })),
    removedCids: commit.removedCids.toList().map((c) => c.toString()),
    recordPuts: creates.map((w) => ({ uri: w.uri, collection: w.collection, rkey: w.rkey, cid: w.cid.toString() })),
    recordDeletes: [],
    replacedUris: [],
    backlinks: [],
    events: [{ type: 'commit', bytes: event }],
  }
}

interface Mark {
  cid: string
  removed_rev: string
  removed_at: string
}

const rejection = async (promise: Promise<unknown>): Promise<unknown> => {
  try {
    await promise
  } catch (err) {
    return err
  }
  throw new Error('expected the promise to reject')
}

describe('commit batch guards', () => {
  beforeEach(wipeDatabase)

  it('refuses a second commit built on the same root and writes nothing of it', async () => {
    const ctx = await newRepoContext()
    await ensureGenesis(ctx)
    const first = await buildCommit(ctx, [await prepareThing(ctx.did, 1), await prepareThing(ctx.did, 2)])
    const second = await buildCommit(ctx, [await prepareThing(ctx.did, 3)])
    expect(second.prev).toBe(first.prev)

    await writeCommit(ctx.db, first)
    const before = await rowCounts()
    const err = await rejection(writeCommit(ctx.db, second))

    expect(isStaleCommitError(err)).toBe(true)
    expect(String((err as Error).message)).toMatch(/commit_chain/)
    expect(await rowCounts()).toEqual(before)
    expect((await getRoot(ctx.db))?.cid).toBe(first.cid)
    // None of the loser's blocks or records landed.
    const loserBlocks = second.newBlocks.map((b) => b.cid).filter((cid) => !first.newBlocks.some((f) => f.cid === cid))
    expect(loserBlocks.length).toBeGreaterThan(0)
    const found = await workerEnv.DB.prepare(`SELECT count(*) AS n FROM block WHERE cid IN (${loserBlocks.map(() => '?').join(',')})`)
      .bind(...loserBlocks)
      .first<{ n: number }>()
    expect(found?.n).toBe(0)
    expect(await workerEnv.DB.prepare('SELECT count(*) AS n FROM record WHERE uri = ?').bind(second.recordPuts[0].uri).first('n')).toBe(0)
    await linearChain()
  })

  it('refuses a commit on the current root whose rev does not increase (trigger)', async () => {
    const ctx = await newRepoContext()
    await ensureGenesis(ctx)
    const good = await buildCommit(ctx, [await prepareThing(ctx.did, 'a')])
    await writeCommit(ctx.db, good)
    const next = await buildCommit(ctx, [await prepareThing(ctx.did, 'b')])
    const before = await rowCounts()

    for (const rev of ['2222222222222', good.rev]) {
      const err = await rejection(writeCommit(ctx.db, { ...next, rev }))
      expect(String((err as Error).message)).toMatch(/rev does not increase/)
      expect(isStaleCommitError(err)).toBe(true)
      expect(await rowCounts()).toEqual(before)
    }
    // The honest commit still goes through afterwards.
    await writeCommit(ctx.db, next)
    expect((await getRoot(ctx.db))?.rev).toBe(next.rev)
    expect(await linearChain()).toHaveLength(3)
  })

  it('isStaleCommitError does not match other failures (they must not be retried)', async () => {
    const ctx = await newRepoContext()
    await ensureGenesis(ctx)
    const err = await rejection(workerEnv.DB.prepare("INSERT INTO repo_root VALUES ('did:web:x', 'c', 'r', 'now'), ('did:web:x', 'c', 'r', 'now')").run())
    expect(String(err)).toMatch(/UNIQUE constraint failed: repo_root/)
    expect(isStaleCommitError(err)).toBe(false)
    expect(isStaleCommitError(new Error('network connection lost'))).toBe(false)
    expect(isStaleCommitError(undefined)).toBe(false)
  })
})

describe('removed blocks', () => {
  beforeEach(wipeDatabase)

  it('are marked with the removing rev, not deleted; deleteDueRemovedBlocks only takes old marked ones', async () => {
    const ctx = await newRepoContext()
    const marks = async () =>
      (await workerEnv.DB.prepare('SELECT cid, removed_rev, removed_at FROM block WHERE removed_rev IS NOT NULL').all<Mark>()).results
    const a = await prepareThing(ctx.did, 'a1', 'a')
    const b = await prepareThing(ctx.did, 'b1', 'b')
    const c1 = (await commitWrites(ctx, [a, b]))!
    const beforeUpdate = await getRoot(ctx.db)

    // Commit 2 replaces a's record: its old block, the old MST nodes and the old commit leave the repo.
    const a2 = await prepareThing(ctx.did, 'a2', 'a')
    const c2 = (await commitWrites(ctx, [{ ...a2, action: 'update' }]))!
    const m2 = await marks()
    const byC2 = m2.filter((r) => r.removed_rev === c2.rev).map((r) => r.cid)
    expect(byC2).toContain(a.cid.toString())
    expect(byC2).toContain(c1.cid.toString())
    expect(m2.map((r) => r.cid)).not.toContain(b.cid.toString())
    const blocksBefore = (await rowCounts()).block

    // Commit 3, a little later, deletes b: more blocks marked.
    await sleep(5)
    const c3 = (await commitWrites(ctx, [prepareDelete({ did: ctx.did, collection: b.collection, rkey: b.rkey })]))!
    const byC3 = (await marks()).filter((r) => r.removed_rev === c3.rev).map((r) => r.cid)
    expect(byC3).toContain(b.cid.toString())
    // Marking is not deleting.
    expect((await rowCounts()).block).toBeGreaterThan(blocksBefore)

    // The snapshot at the old root still exports and verifies (getRepo streams that started before).
    const old = recordsOf(await verifyStoredRepo(ctx, beforeUpdate!))
    expect(old).toEqual(new Map([[`${a.collection}/a`, a.cid.toString()], [`${b.collection}/b`, b.cid.toString()]]))

    const total = (await rowCounts()).block
    const times = m2.map((r) => Date.parse(r.removed_at))
    const cutoff = new Date(Math.max(...times)).toISOString()
    expect(await deleteDueRemovedBlocks(ctx.db, new Date(Math.min(...times) - 1).toISOString(), 1000)).toBe(0)
    expect(await deleteDueRemovedBlocks(ctx.db, cutoff, 1)).toBe(1)
    expect(await deleteDueRemovedBlocks(ctx.db, cutoff, 1000)).toBe(m2.length - 1)
    expect((await rowCounts()).block).toBe(total - m2.length)
    expect((await marks()).map((r) => r.cid).sort()).toEqual([...byC3].sort())

    // The current repo is untouched by the clean-up.
    expect(recordsOf(await verifyStoredRepo(ctx))).toEqual(new Map([[`${a.collection}/a`, a2.cid.toString()]]))
    const { live, reachable } = await liveAndReachableBlocks(ctx.db)
    expect(live).toEqual(reachable)
  })

  it('a record block shared by two records stays live until the last one goes', async () => {
    const ctx = await newRepoContext()
    const x = await prepareThing(ctx.did, 'same', 'x')
    const y = await prepareThing(ctx.did, 'same', 'y')
    expect(x.cid.equals(y.cid)).toBe(true)
    await commitWrites(ctx, [x, y])
    await commitWrites(ctx, [prepareDelete({ did: ctx.did, collection: x.collection, rkey: 'x' })])
    const row = await workerEnv.DB.prepare('SELECT removed_rev FROM block WHERE cid = ?').bind(x.cid.toString()).first<{ removed_rev: string | null }>()
    expect(row?.removed_rev).toBeNull()
    await commitWrites(ctx, [prepareDelete({ did: ctx.did, collection: y.collection, rkey: 'y' })])
    const after = await workerEnv.DB.prepare('SELECT removed_rev FROM block WHERE cid = ?').bind(x.cid.toString()).first<{ removed_rev: string | null }>()
    expect(after?.removed_rev).not.toBeNull()
    const { live, reachable } = await liveAndReachableBlocks(ctx.db)
    expect(live).toEqual(reachable)
  })

  it('a block that comes back after removal is live again', async () => {
    const ctx = await newRepoContext()
    const v1 = await prepareThing(ctx.did, 'v1', 'k')
    await commitWrites(ctx, [v1])
    await commitWrites(ctx, [{ ...(await prepareThing(ctx.did, 'v2', 'k')), action: 'update' }])
    const c3 = (await commitWrites(ctx, [{ ...v1, action: 'update' }]))!
    const row = await workerEnv.DB.prepare('SELECT rev, removed_rev FROM block WHERE cid = ?').bind(v1.cid.toString()).first<{ rev: string; removed_rev: string | null }>()
    expect(row).toEqual({ rev: c3.rev, removed_rev: null })
    const { live, reachable } = await liveAndReachableBlocks(ctx.db)
    expect(live).toEqual(reachable)
  })
})

describe('removed-block clean-up', () => {
  beforeEach(wipeDatabase)

  // One DELETE picks and re-checks its victims, so a commit cannot slip in
  // between (an earlier select-then-delete could remove a block a commit had
  // just brought back).
  it('never deletes a block a commit brought back, however old its removal', async () => {
    const ctx = await newRepoContext()
    const v1 = await prepareThing(ctx.did, 'v1', 'k')
    await commitWrites(ctx, [v1])
    await commitWrites(ctx, [{ ...(await prepareThing(ctx.did, 'v2', 'k')), action: 'update' }])
    const longAgo = new Date(Date.now() - 2 * 3600 * 1000).toISOString()
    await workerEnv.DB.prepare('UPDATE block SET removed_at = ? WHERE removed_rev IS NOT NULL').bind(longAgo).run()
    await commitWrites(ctx, [{ ...v1, action: 'update' }])

    await deleteDueRemovedBlocks(ctx.db, new Date(Date.now() - 3600 * 1000).toISOString(), 1000)

    const row = await workerEnv.DB.prepare('SELECT removed_rev FROM block WHERE cid = ?').bind(v1.cid.toString()).first()
    expect(row).toEqual({ removed_rev: null })
    expect(recordsOf(await verifyStoredRepo(ctx))).toEqual(new Map([[`${v1.collection}/k`, v1.cid.toString()]]))
  })

  it('deletes more than 100 due blocks in one call (no bound parameter per block)', async () => {
    const ctx = await newRepoContext()
    const things = await Promise.all(Array.from({ length: 150 }, (_, i) => prepareThing(ctx.did, `t${i}`, `r${i}`)))
    await commitWrites(ctx, things)
    await commitWrites(ctx, things.map((t) => prepareDelete({ did: ctx.did, collection: t.collection, rkey: t.rkey })))
    const longAgo = new Date(Date.now() - 2 * 3600 * 1000).toISOString()
    await workerEnv.DB.prepare('UPDATE block SET removed_at = ? WHERE removed_rev IS NOT NULL').bind(longAgo).run()
    const due = (await workerEnv.DB.prepare('SELECT count(*) AS n FROM block WHERE removed_at IS NOT NULL').first<{ n: number }>())!.n
    expect(due).toBeGreaterThan(150)
    expect(await deleteDueRemovedBlocks(ctx.db, new Date(Date.now() - 3600 * 1000).toISOString(), 1000)).toBe(due)
    const { live, reachable } = await liveAndReachableBlocks(ctx.db)
    expect(live).toEqual(reachable)
  })
})

describe('statement sizes', () => {
  beforeEach(wipeDatabase)

  it('a 200-write commit (blocks, records, backlinks, removals) stays within 100 bound parameters', async () => {
    const ctx = await newRepoContext()
    const now = new Date().toISOString()
    const follows = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        prepareCreate({
          did: ctx.did,
          collection: 'app.bsky.graph.follow',
          record: { subject: `did:plc:${String(i).padStart(24, 'a')}`, createdAt: now },
        }),
      ),
    )
    await commitWrites(ctx, follows)
    expect((await rowCounts()).record).toBe(200)
    expect((await rowCounts()).backlink).toBe(200)
    // Replacing all 200 removes 200 record blocks and many MST nodes in one batch.
    const deletes = follows.map((f) => prepareDelete({ did: ctx.did, collection: f.collection, rkey: f.rkey }))
    await commitWrites(ctx, deletes)
    const counts = await rowCounts()
    expect(counts.record).toBe(0)
    expect(counts.backlink).toBe(0)
    expect(recordsOf(await verifyStoredRepo(ctx)).size).toBe(0)
    const { live, reachable } = await liveAndReachableBlocks(ctx.db)
    expect(live).toEqual(reachable)
  })

  it('getRepoCreatedAt is the genesis time', async () => {
    const ctx = await newRepoContext({ genesis: false })
    expect(await getRepoCreatedAt(ctx.db)).toBeNull()
    const started = Date.now()
    await ensureGenesis(ctx)
    await commitWrites(ctx, [await prepareThing(ctx.did, 1)])
    const at = await getRepoCreatedAt(openDb(workerEnv.DB))
    expect(at).not.toBeNull()
    expect(Date.parse(at!)).toBeGreaterThanOrEqual(started - 1000)
  })
})
