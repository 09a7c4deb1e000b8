/**
 * Concurrent writers (src/repo/commit.ts): within an isolate the queue
 * serialises commits; across isolates only the database does (UNIQUE
 * commit_chain.prev + the rev trigger), and the loser rebuilds on the new
 * root. A second copy of the module (imported under a query string, so it
 * has its own queue) stands in for a second isolate sharing the same D1.
 */
import { decode } from '@atproto/lex-cbor'
import type { Cid } from '@atproto/lex-data'
import { beforeEach, describe, expect, it } from 'vitest'
import type { Db } from '../../src/db/client'
import { openDb } from '../../src/db/client'
import { isStaleCommitError } from '../../src/db/repo'
import { readEventsAfter } from '../../src/db/seq'
import * as isolateA from '../../src/repo/commit'
import { prepareUpdate } from '../../src/repo/prepare'
import {
  liveAndReachableBlocks,
  linearChain,
  newRepoContext,
  prepareThing,
  recordsOf,
  THING,
  verifyStoredRepo,
  wipeDatabase,
  workerEnv,
} from './fixtures'

type CommitModule = typeof isolateA
const SECOND_COPY = '../../src/repo/commit?isolate=b'

/** A Db whose batches count the stale-commit refusals D1 hands back. */
const staleCounting = (db: Db): { db: Db; stale: () => number } => {
  let stale = 0
  const counted =
    <A, R>(run: (statements: A) => Promise<R>) =>
    async (statements: A): Promise<R> => {
      try {
        return await run(statements)
      } catch (err) {
        if (isStaleCommitError(err)) stale++
        throw err
      }
    }
  return {
    db: {
      ...db,
      batch: counted(db.batch),
      // Commits go through here (src/db/repo.ts writeCommit).
      batchSqlResults: counted(db.batchSqlResults),
    },
    stale: () => stale,
  }
}

interface CommitEventBody {
  commit: Cid
  rev: string
  since: string | null
  ops: { action: string; path: string; cid: Cid | null; prev?: Cid }[]
}

const commitEvents = async (): Promise<CommitEventBody[]> =>
  (await readEventsAfter(openDb(workerEnv.DB), 0, 1000)).filter((e) => e.eventType === 'commit').map((e) => decode(e.event) as never)

describe('concurrent commitWrites', () => {
  beforeEach(wipeDatabase)

  it('in one isolate: every call commits, in one linear chain', async () => {
    const ctx = await newRepoContext()
    await isolateA.createGenesis(ctx)
    const writes = await Promise.all(Array.from({ length: 20 }, (_, i) => prepareThing(ctx.did, i, `r${i}`)))
    const results = await Promise.all(writes.map((w) => isolateA.commitWrites(ctx, [w])))

    const chain = (await linearChain()).reverse()
    expect(chain).toHaveLength(21)
    const byRev = [...results].sort((a, b) => (a!.rev < b!.rev ? -1 : 1))
    expect(byRev.map((r) => r!.cid.toString())).toEqual(chain.slice(1).map((c) => c.cid))
    for (let i = 1; i < byRev.length; i++) expect(byRev[i]!.since).toBe(byRev[i - 1]!.rev)
    expect(recordsOf(await verifyStoredRepo(ctx)).size).toBe(20)
  })

  it('in one isolate: writers take their turns in the order they came, however long they waited', async () => {
    const ctx = await newRepoContext()
    const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms))
    const order: string[] = []
    // Plans that commit nothing: only whose turn comes when matters here.
    const turn = (name: string, holdMs = 0) =>
      isolateA.runCommit(ctx, async () => {
        order.push(name)
        await sleep(holdMs)
        return null
      })
    const first = turn('first', 120)
    await sleep(5)
    const early = turn('early') // waits ~115 ms
    await sleep(100)
    const late = turn('late') // comes just before the lock is let go
    const later = turn('later')
    await Promise.all([first, early, late, later])
    expect(order).toEqual(['first', 'early', 'late', 'later'])
  })

  it('two isolates racing from an empty database: one genesis, no fork, no lost write', { timeout: 60_000 }, async () => {
    const isolateB = (await import(/* @vite-ignore */ SECOND_COPY)) as CommitModule
    expect(isolateB.commitWrites).not.toBe(isolateA.commitWrites)
    const a = staleCounting(openDb(workerEnv.DB))
    const b = staleCounting(openDb(workerEnv.DB))
    const ctxA = await newRepoContext({ db: a.db })
    const ctxB = await newRepoContext({ db: b.db })

    // Each write creates its own record and puts a shared one, so a retried
    // commit must re-resolve the put (create vs update, prev) on the new root.
    const write = async (mod: CommitModule, ctx: isolateA.RepoContext, tag: string) => {
      const own = await prepareThing(ctx.did, tag, tag)
      const shared = await prepareUpdate({ did: ctx.did, collection: THING, rkey: 'shared', record: { value: tag } })
      return mod.commitWrites(ctx, [own, { ...shared, action: 'put' }])
    }
    const n = 8
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => [write(isolateA, ctxA, `a${i}`), write(isolateB, ctxB, `b${i}`)]).flat(),
    )
    expect(results.every((r) => r !== null)).toBe(true)
    // The race really happened: D1 refused stale commits and they were rebuilt.
    expect(a.stale() + b.stale()).toBeGreaterThan(0)

    const chain = await linearChain()
    expect(chain).toHaveLength(2 * n + 1)
    const types = (await readEventsAfter(openDb(workerEnv.DB), 0, 1000)).map((e) => e.eventType)
    expect(types.filter((t) => t === 'identity')).toHaveLength(1)
    expect(types.filter((t) => t === 'account')).toHaveLength(1)

    // Events in seq order follow the chain, and each shared-record op's prev is
    // the CID the previous commit wrote (no op built on a stale tree).
    const events = await commitEvents()
    expect(events.map((e) => e.commit.toString())).toEqual([...chain].reverse().map((c) => c.cid))
    let sharedCid: Cid | null = null
    for (const e of events.slice(1)) {
      const op = e.ops.find((o) => o.path === `${THING}/shared`)!
      expect(op.action).toBe(sharedCid ? 'update' : 'create')
      expect(op.prev?.toString()).toBe(sharedCid?.toString())
      sharedCid = op.cid
    }

    const records = recordsOf(await verifyStoredRepo(ctxA))
    expect(records.size).toBe(2 * n + 1)
    expect(records.get(`${THING}/shared`)).toBe(sharedCid!.toString())
    const { live, reachable } = await liveAndReachableBlocks(ctxA.db)
    expect(live).toEqual(reachable)
  })
})
