/**
 * commitWrites / createGenesis (src/repo/commit.ts), the single write path:
 * create/update/delete/put semantics and swaps as the reference PDS has them,
 * the genesis commit and its events, exactly one #commit event per commit
 * (stored in the same batch), and after every change a repo that exports and
 * verifies with exactly its reachable blocks live.
 */
import { decode } from '@atproto/lex-cbor'
import type { Cid } from '@atproto/lex-data'
import { readCarWithRoot } from '@atproto/repo'
import { beforeEach, describe, expect, it } from 'vitest'
import { getRoot } from '../../src/db/repo'
import { readEventsAfter } from '../../src/db/seq'
import { commitWrites, createGenesis, type RepoContext } from '../../src/repo/commit'
import { BadCommitSwapError, BadRecordSwapError, InvalidRecordError } from '../../src/repo/errors'
import { prepareCreate, prepareDelete, prepareUpdate } from '../../src/repo/prepare'
import {
  ensureGenesis,
  liveAndReachableBlocks,
  linearChain,
  newRepoContext,
  prepareThing,
  recordsOf,
  rowCounts,
  THING,
  verifyStoredRepo,
  wipeDatabase,
  workerEnv,
} from './fixtures'

type Body = Record<string, unknown>

const eventsOf = async (ctx: RepoContext) =>
  (await readEventsAfter(ctx.db, 0, 1000)).map((e) => ({ seq: e.seq, type: e.eventType, body: decode(e.event) as Body }))

/** The repo exports, verifies, and holds exactly the reachable blocks unremoved. */
const expectSound = async (ctx: RepoContext): Promise<Map<string, string>> => {
  const records = recordsOf(await verifyStoredRepo(ctx))
  const { live, reachable } = await liveAndReachableBlocks(ctx.db)
  expect(live).toEqual(reachable)
  await linearChain()
  return records
}

const path = (rkey: string): string => `${THING}/${rkey}`
const update = async (ctx: RepoContext, value: unknown, rkey: string, swapCid?: Cid | null) => ({
  ...(await prepareUpdate({ did: ctx.did, collection: THING, rkey, record: { value }, swapCid })),
  action: 'update' as const,
})
const put = async (ctx: RepoContext, value: unknown, rkey: string, swapCid?: Cid | null) => ({
  ...(await prepareUpdate({ did: ctx.did, collection: THING, rkey, record: { value }, swapCid })),
  action: 'put' as const,
})
const del = (ctx: RepoContext, rkey: string, extra: { ifExists?: boolean; swapCid?: Cid | null } = {}) => ({
  ...prepareDelete({ did: ctx.did, collection: THING, rkey, swapCid: extra.swapCid }),
  ifExists: extra.ifExists,
})

describe('genesis', () => {
  beforeEach(wipeDatabase)

  it('createGenesis makes one genesis commit announcing #identity, #account, #commit', async () => {
    const ctx = await newRepoContext({ genesis: false })
    const root = await ensureGenesis(ctx)
    expect(await createGenesis(ctx)).toBeNull()
    expect(await ensureGenesis(ctx)).toEqual(root)
    const events = await eventsOf(ctx)
    expect(events.map((e) => e.type)).toEqual(['identity', 'account', 'commit'])
    expect(events[0].body).toMatchObject({ did: ctx.did, handle: ctx.handle })
    expect(events[1].body).toMatchObject({ did: ctx.did, active: true })
    expect(events[2].body).toMatchObject({ repo: ctx.did, rev: root.rev, since: null, ops: [] })
    expect((events[2].body.commit as Cid).toString()).toBe(root.cid)
    expect(events[2].body.prevData).toBeUndefined()
    const counts = await rowCounts()
    expect(counts.commit_chain).toBe(1)
    expect(counts.record).toBe(0)
    expect(await expectSound(ctx)).toEqual(new Map())
  })

  it('a write never makes the genesis commit: on an empty database it fails and writes nothing', async () => {
    const ctx = await newRepoContext({ genesis: false })
    await expect(commitWrites(ctx, [await prepareThing(ctx.did, 1, 'one')])).rejects.toThrow(/no genesis commit/)
    expect(await eventsOf(ctx)).toEqual([])
    const counts = await rowCounts()
    expect(counts.commit_chain + counts.block + counts.record + counts.repo_root).toBe(0)
  })
})

describe('write semantics', () => {
  beforeEach(wipeDatabase)

  it('create, update, delete: records, ops with prev, one #commit event each', async () => {
    let commits = 0
    const ctx = await newRepoContext({ onCommit: () => commits++ })
    await ensureGenesis(ctx)
    commits = 0
    const created = await prepareThing(ctx.did, 'v1', 'k')
    const c1 = (await commitWrites(ctx, [created]))!
    expect(c1.ops).toEqual([{ action: 'create', path: path('k'), cid: created.cid }])
    const updated = await update(ctx, 'v2', 'k')
    const c2 = (await commitWrites(ctx, [updated]))!
    expect(c2.ops).toEqual([{ action: 'update', path: path('k'), cid: updated.cid, prev: created.cid }])
    expect(c2.since).toBe(c1.rev)
    const c3 = (await commitWrites(ctx, [del(ctx, 'k')]))!
    expect(c3.ops).toEqual([{ action: 'delete', path: path('k'), cid: null, prev: updated.cid }])
    expect(commits).toBe(3)

    // One #commit event per commit, describing it.
    const events = (await eventsOf(ctx)).slice(3)
    expect(events.map((e) => e.type)).toEqual(['commit', 'commit', 'commit'])
    for (const [i, c] of [c1, c2, c3].entries()) {
      const body = events[i].body
      expect((body.commit as Cid).toString()).toBe(c.cid.toString())
      expect(body.rev).toBe(c.rev)
      expect(body.since).toBe(c.since)
      expect((body.prevData as Cid).toString()).toBe(c.prevData?.toString())
      const { root, blocks } = await readCarWithRoot(body.blocks as Uint8Array)
      expect(root.toString()).toBe(c.cid.toString())
      for (const op of c.ops) if (op.cid) expect(blocks.has(op.cid)).toBe(true)
    }
    expect(await expectSound(ctx)).toEqual(new Map())
  })

  it('put: create when missing, update when different, null (no commit) when identical', async () => {
    let commits = 0
    const ctx = await newRepoContext({ onCommit: () => commits++ })
    await ensureGenesis(ctx)
    commits = 0
    const first = (await commitWrites(ctx, [await put(ctx, 'a', 'p')]))!
    expect(first.writes[0].action).toBe('create')
    expect(first.ops[0].action).toBe('create')
    const before = await rowCounts()
    expect(await commitWrites(ctx, [await put(ctx, 'a', 'p')])).toBeNull()
    expect(await rowCounts()).toEqual(before)
    const second = (await commitWrites(ctx, [await put(ctx, 'b', 'p')]))!
    expect(second.writes[0].action).toBe('update')
    expect(commits).toBe(2)
    const records = await expectSound(ctx)
    const written = second.writes[0]
    expect(written.action !== 'delete' && records.get(path('p')) === written.cid.toString()).toBe(true)
  })

  it('delete of a missing key: null with ifExists, InvalidRecordError without', async () => {
    const ctx = await newRepoContext()
    await ensureGenesis(ctx)
    const before = await rowCounts()
    expect(await commitWrites(ctx, [del(ctx, 'missing', { ifExists: true })])).toBeNull()
    await expect(commitWrites(ctx, [del(ctx, 'missing')])).rejects.toBeInstanceOf(InvalidRecordError)
    await expect(commitWrites(ctx, [await update(ctx, 'x', 'missing')])).rejects.toBeInstanceOf(InvalidRecordError)
    expect(await rowCounts()).toEqual(before)
  })

  it('create on an existing key is refused and writes nothing', async () => {
    const ctx = await newRepoContext()
    await commitWrites(ctx, [await prepareThing(ctx.did, 1, 'dup')])
    const before = await rowCounts()
    const err = await commitWrites(ctx, [await prepareThing(ctx.did, 2, 'other'), await prepareThing(ctx.did, 3, 'dup')]).catch((e) => e)
    expect(err).toBeInstanceOf(InvalidRecordError)
    expect(String(err.message)).toMatch(/already exists/)
    expect(await rowCounts()).toEqual(before)
  })

  it('swapRecord: mismatches throw BadRecordSwapError, matches commit', async () => {
    const ctx = await newRepoContext()
    const v1 = await prepareThing(ctx.did, 'v1', 's')
    await commitWrites(ctx, [v1])
    const other = await prepareThing(ctx.did, 'other', 'x')
    const before = await rowCounts()
    await expect(commitWrites(ctx, [await update(ctx, 'v2', 's', other.cid)])).rejects.toBeInstanceOf(BadRecordSwapError)
    // swapRecord null means "must not exist".
    await expect(commitWrites(ctx, [await put(ctx, 'v2', 's', null)])).rejects.toBeInstanceOf(BadRecordSwapError)
    await expect(commitWrites(ctx, [del(ctx, 's', { swapCid: other.cid })])).rejects.toBeInstanceOf(BadRecordSwapError)
    await expect(
      commitWrites(ctx, [await prepareCreate({ did: ctx.did, collection: THING, rkey: 'new', record: { value: 1 }, swapCid: v1.cid })]),
    ).rejects.toBeInstanceOf(BadRecordSwapError)
    expect(await rowCounts()).toEqual(before)

    expect(await commitWrites(ctx, [await put(ctx, 'v2', 's', v1.cid)])).not.toBeNull()
    expect(await commitWrites(ctx, [await put(ctx, 'n', 'fresh', null)])).not.toBeNull()
    await expectSound(ctx)
  })

  it('swapCommit: a stale commit CID throws BadCommitSwapError, the current one commits', async () => {
    const ctx = await newRepoContext()
    const c1 = (await commitWrites(ctx, [await prepareThing(ctx.did, 1, 'a')]))!
    const c2 = (await commitWrites(ctx, [await prepareThing(ctx.did, 2, 'b')]))!
    const before = await rowCounts()
    await expect(commitWrites(ctx, [await prepareThing(ctx.did, 3, 'c')], { swapCommit: c1.cid })).rejects.toBeInstanceOf(
      BadCommitSwapError,
    )
    expect(await rowCounts()).toEqual(before)
    const c3 = (await commitWrites(ctx, [await prepareThing(ctx.did, 3, 'c')], { swapCommit: c2.cid }))!
    expect(c3.since).toBe(c2.rev)
  })

  it('more than 200 writes are refused', async () => {
    const ctx = await newRepoContext()
    const writes = await Promise.all(Array.from({ length: 201 }, (_, i) => prepareThing(ctx.did, i)))
    await expect(commitWrites(ctx, writes)).rejects.toBeInstanceOf(InvalidRecordError)
  })

  it('create and delete of the same key in one call: the net change is nothing, so no commit', async () => {
    const ctx = await newRepoContext()
    const keep = await prepareThing(ctx.did, 'keep', 'keep')
    const c0 = (await commitWrites(ctx, [keep]))!
    const eventsBefore = (await eventsOf(ctx)).length
    const temp = await prepareThing(ctx.did, 'temp', 'temp')
    expect(await commitWrites(ctx, [temp, del(ctx, 'temp')])).toBeNull()
    // The repo is as before; nothing of the temporary record is indexed or left live, and no event.
    expect((await getRoot(ctx.db))?.cid).toBe(c0.cid.toString())
    expect((await eventsOf(ctx)).length).toBe(eventsBefore)
    expect(await expectSound(ctx)).toEqual(new Map([[path('keep'), keep.cid.toString()]]))
    expect((await rowCounts()).record).toBe(1)
  })

  it('several actions on one key in one call commit only the net change per path (one op each)', async () => {
    const ctx = await newRepoContext()
    const v1 = await prepareThing(ctx.did, 'v1', 'k')
    const other = await prepareThing(ctx.did, 'o', 'other')
    const c0 = (await commitWrites(ctx, [v1, other]))!
    // update, update: one update from the original to the last value.
    const v2 = await update(ctx, 'v2', 'k')
    const v3 = await update(ctx, 'v3', 'k')
    const c1 = (await commitWrites(ctx, [v2, v3]))!
    expect(c1.ops).toEqual([{ action: 'update', path: path('k'), cid: v3.cid, prev: v1.cid }])
    // update then delete: one delete with the original prev; create then update: one create of the final record.
    const n1 = await prepareThing(ctx.did, 'n1', 'new')
    const n2 = await update(ctx, 'n2', 'new')
    const c2 = (await commitWrites(ctx, [await update(ctx, 'x', 'other'), del(ctx, 'other'), n1, n2]))!
    expect(c2.ops).toEqual([
      { action: 'delete', path: path('other'), cid: null, prev: other.cid },
      { action: 'create', path: path('new'), cid: n2.cid },
    ])
    // delete then create again: an update from the original to the new record.
    const again = await prepareThing(ctx.did, 'again', 'k')
    const c3 = (await commitWrites(ctx, [del(ctx, 'k'), again]))!
    expect(c3.ops).toEqual([{ action: 'update', path: path('k'), cid: again.cid, prev: v3.cid }])
    expect(c3.since).toBe(c2.rev)
    expect(c0.rev < c1.rev).toBe(true)
    // Only the final records are indexed, and the live blocks are exactly the reachable ones.
    expect(await expectSound(ctx)).toEqual(
      new Map([
        [path('k'), again.cid.toString()],
        [path('new'), n2.cid.toString()],
      ]),
    )
  })

  it('replaceBacklinks: a second follow of the same subject replaces the first in the same commit', async () => {
    const ctx = await newRepoContext()
    const follow = (subject: string) =>
      prepareCreate({ did: ctx.did, collection: 'app.bsky.graph.follow', record: { subject, createdAt: new Date().toISOString() } })
    const first = await follow('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa')
    const unrelated = await follow('did:plc:bbbbbbbbbbbbbbbbbbbbbbbb')
    await commitWrites(ctx, [first, unrelated], { replaceBacklinks: true })
    const second = await follow('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa')
    const result = (await commitWrites(ctx, [second], { replaceBacklinks: true }))!
    expect(result.ops.map((o) => [o.action, o.path])).toEqual([
      ['delete', `app.bsky.graph.follow/${first.rkey}`],
      ['create', `app.bsky.graph.follow/${second.rkey}`],
    ])
    const records = await expectSound(ctx)
    expect([...records.keys()].sort()).toEqual([`app.bsky.graph.follow/${second.rkey}`, `app.bsky.graph.follow/${unrelated.rkey}`].sort())
    expect((await rowCounts()).backlink).toBe(2)
  })

  it('a commit whose event blocks exceed 2 MB is refused', async () => {
    const ctx = await newRepoContext()
    const big = (i: number) => prepareThing(ctx.did, `${i}`.repeat(700_000), `big${i}`)
    const writes = [await big(1), await big(2), await big(3)]
    await ensureGenesis(ctx)
    const before = await rowCounts()
    await expect(commitWrites(ctx, writes)).rejects.toThrow(/Max event size/)
    expect(await rowCounts()).toEqual(before)
  })

  it('a commit with a ~900 KB record stores a chunked event that reads back whole', async () => {
    const ctx = await newRepoContext()
    const big = await prepareThing(ctx.did, 'x'.repeat(900_000), 'big')
    const result = (await commitWrites(ctx, [big]))!
    expect((await rowCounts()).repo_seq_chunk).toBeGreaterThan(1)
    const last = (await eventsOf(ctx)).at(-1)!
    expect((last.body.commit as Cid).toString()).toBe(result.cid.toString())
    const { blocks } = await readCarWithRoot(last.body.blocks as Uint8Array)
    expect(blocks.get(big.cid)).toEqual(big.bytes)
    await expectSound(ctx)
  })
})

