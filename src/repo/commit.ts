/**
 * The single write path: every change to the repo is a planned commit
 * (plan-writes.ts for record writes, plan-genesis.ts for a fresh identity's
 * first commit) written here as ONE D1 batch: blocks, root, record index,
 * backlinks, the commit chain row and the firehose events.
 *
 * D1 has no interactive transactions, and other isolates may write at the
 * same moment, so soundness rests on the database: `commit_chain.prev` is
 * UNIQUE and revs must increase (a trigger), so a commit planned on a stale
 * root fails as a whole and is planned again on the new root. An in-isolate
 * lock keeps this isolate's own writes from racing each other; nothing in
 * memory (block cache aside, which is keyed by immutable CIDs) advances
 * before the batch has committed.
 *
 * Round trips for a warm write: one, the commit, planned on the head this
 * isolate committed last and guarded by D1 (src/repo/plan-writes.ts); two
 * when the write reads first (a cold isolate, or the guard refused it): one
 * batch to read the root (and any backlinks and blobs), one to commit.
 */
import type { BatchItem } from 'drizzle-orm/batch'
import { isMissingBlobError } from '../db/blobs'
import { isCommitGuardError, isStaleCommitError, writeCommit } from '../db/repo'
import type { PlannedCommit, RepoContext } from './context'
import { BlobRefError, InvalidRecordError, RepoBusyError } from './errors'
import { planGenesis, type GenesisResult } from './plan-genesis'
import { planWrites, type CommitOptions, type CommitResult, type WriteRequest } from './plan-writes'
import { rememberHead } from './head'
import { blockCache } from './storage'

export type { CommitOptions, CommitResult, GenesisResult, RepoContext, WriteRequest }

const MAX_WRITES = 200
const MAX_ATTEMPTS = 20

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Serialises this isolate's writes, so concurrent requests take turns instead
 * of racing for the root and retrying. D1 (commit_chain) still guards against
 * other isolates and is what makes this sound.
 *
 * Turns are first come, first served: the holder wakes the longest waiter
 * when it lets go. (Waiters that only polled with a backoff let a newcomer
 * overtake them, and sat idle between polls while the lock was free: with 8
 * writers the slowest write took 5x the median.) A waiter is woken through a
 * promise of its own, settled by the request that lets go; workerd delivers
 * that to the waiting request, but would call a request that waits on nothing
 * of its own hung, so each waiter also keeps a timer and looks again every
 * WAIT_POLL_MS.
 *
 * Requests can be cancelled (a client that hangs up) and then never run
 * again: a holder's lock is a lease, and a waiter not seen for WAITER_GONE_MS
 * is passed over. A waiter that was passed over while alive (the isolate was
 * busy for that long) finds itself out of the line and steps back in at the
 * front, where it was.
 */
const LOCK_LEASE_MS = 30_000
const WAIT_POLL_MS = 50
const WAITER_GONE_MS = 1_000
let lockedUntil = 0

interface Waiter {
  wake: () => void
  seenAt: number
}
const line: Waiter[] = []

const gone = (w: Waiter): boolean => Date.now() - w.seenAt > WAITER_GONE_MS

/** The lock is free and everyone ahead of `me` in the line is gone. */
const myTurn = (me: Waiter): boolean => {
  if (Date.now() < lockedUntil) return false
  for (const w of line) {
    if (w === me) return true
    if (!gone(w)) return false
  }
  return false
}

const waitForTurn = async (): Promise<void> => {
  const me: Waiter = { wake: () => {}, seenAt: Date.now() }
  line.push(me)
  while (!myTurn(me)) {
    await Promise.race([new Promise<void>((resolve) => (me.wake = resolve)), sleep(WAIT_POLL_MS)])
    me.seenAt = Date.now()
    if (!line.includes(me)) line.unshift(me)
  }
  // Leave the line, with the gone waiters that stood ahead.
  line.splice(0, line.indexOf(me) + 1)
}

const serialised = async <T>(fn: () => Promise<T>): Promise<T> => {
  if (Date.now() < lockedUntil || line.length > 0) await waitForTurn()
  const lease = Date.now() + LOCK_LEASE_MS
  lockedUntil = lease
  try {
    return await fn()
  } finally {
    if (lockedUntil === lease) {
      lockedUntil = 0
      line.find((w) => !gone(w))?.wake()
    }
  }
}

/**
 * Plans and writes one commit under the lock, planning again on the new
 * root when another isolate won the race. Returns null when the plan says
 * there is nothing to do.
 */
export const runCommit = <R>(ctx: RepoContext, plan: (readFirst: boolean) => Promise<PlannedCommit<R> | null>): Promise<R | null> =>
  serialised(async () => {
    let readFirst = false
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const planned = await plan(readFirst)
      if (!planned) return null
      let seqs: number[] | null
      try {
        seqs = await writeCommit(ctx.db, planned.write)
      } catch (err) {
        // Refused because the root moved, or, for a plan made without reading, because something it
        // assumed (the root, session, account, blobs, backlinks) no longer holds: plan again, reading first.
        const assumed = planned.write.assumes !== undefined
        const planAgain = isStaleCommitError(err) || (assumed && (isCommitGuardError(err) || isMissingBlobError(err)))
        if (!planAgain) {
          // The blob GC won a race against this commit: the batch was refused whole.
          if (isMissingBlobError(err)) throw new BlobRefError('Could not find blob: it was removed while the record was being written', 'BlobNotFound')
          throw err
        }
        readFirst = true
        // A read plan lost a race to another isolate: back off a little, with jitter, before planning again.
        if (!assumed) await sleep(Math.min(200, 5 * 2 ** attempt) * Math.random())
        continue
      }
      blockCache.remember(planned.newBlocks)
      if (planned.head) rememberHead(planned.head)
      ctx.onCommit?.(seqs && planned.write.events.map((e, i) => ({ seq: seqs[i], type: e.type, body: e.bytes })))
      return planned.result
    }
    throw new RepoBusyError('The repository is busy, please retry')
  })

/**
 * Applies record writes as one commit. Returns null when nothing changes (an
 * identical put), in which case no commit is made.
 */
export const commitWrites = (ctx: RepoContext, requests: WriteRequest[], opts: CommitOptions = {}): Promise<CommitResult | null> => {
  if (requests.length > MAX_WRITES) {
    return Promise.reject(new InvalidRecordError(`Too many writes. Max: ${MAX_WRITES}`))
  }
  return runCommit(ctx, (readFirst) => planWrites(ctx, requests, opts, readFirst))
}

/** Makes a fresh identity's genesis commit (with `extra` statements in its batch); null when the repo already has one. */
export const createGenesis = (ctx: RepoContext, extra: BatchItem<'sqlite'>[] = []): Promise<GenesisResult | null> =>
  runCommit(ctx, () => planGenesis(ctx, extra))
