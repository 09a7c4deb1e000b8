/**
 * The single write path. Every mutating XRPC method ends here.
 *
 * A commit is built with `@atproto/repo` on the root read fresh from D1, then
 * written as ONE D1 batch: blocks, root, record index, backlinks, the commit
 * chain row and the firehose event. D1 has no interactive transactions, and
 * other isolates may write at the same moment, so soundness rests on the
 * database: `commit_chain.prev` is UNIQUE and revs must increase (a trigger),
 * so a commit built on a stale root fails as a whole and is rebuilt on the new
 * root. An in-isolate queue keeps this isolate's own writes from racing each
 * other; nothing in memory (block cache aside, which is keyed by immutable
 * CIDs) advances before the batch has committed.
 *
 * Round trips for a warm write: one batch to read the root (and any
 * backlinks), one batch to commit.
 */
import type { Keypair } from '@atproto/crypto'
import { type Cid, parseCid, type TypedBlobRef } from '@atproto/lex-data'
import { blobReferenceStatements, isMissingBlobError, selectBlobs, type BlobRow } from '../db/blobs'
import { BlockMap, Repo, WriteOpAction, type RecordWriteOp } from '@atproto/repo'
import type { Db } from '../db/client'
import { selectBacklinkUris } from '../db/records'
import { isStaleCommitError, selectRoot, writeCommit, type RootRow } from '../db/repo'
import { encodeAccountEvent, encodeCommitEvent, encodeIdentityEvent, type CommitOp } from '../firehose/events'
import { setStateStatement } from '../db/state'
import { BadCommitSwapError, BadRecordSwapError, BlobRefError, InvalidRecordError, RepoBusyError } from './errors'
import { backlinksOf, prepareDelete, type PreparedWrite } from './prepare'
import { D1Blockstore } from './storage'

export interface RepoContext {
  db: Db
  did: string
  signingKey: Keypair
  /** The handle announced in the genesis #identity event. */
  handle: string
  /** Called after a commit is durable (the firehose is told to deliver it). */
  onCommit?: () => void
}

/** A write as the handlers ask for it; `put` becomes create or update against the current tree. */
export type WriteRequest = PreparedWrite | (Omit<PreparedWrite & { action: 'update' }, 'action'> & { action: 'put' })

export interface CommitResult {
  cid: Cid
  rev: string
  since: string | null
  prevData: Cid | null
  ops: CommitOp[]
  /** The writes as applied (puts resolved to create/update). */
  writes: PreparedWrite[]
}

export interface CommitOptions {
  swapCommit?: Cid
  /** createRecord: delete older follows/likes... of the same subject (as the reference PDS). */
  replaceBacklinks?: boolean
}

const MAX_WRITES = 200
/** pds_state key: the handle last announced in an #identity event. */
export const ANNOUNCED_HANDLE = 'announced_handle'
const MAX_ATTEMPTS = 20
/** The reference refuses commits whose event would exceed 2 MB. */
const MAX_EVENT_BLOCK_BYTES = 2_000_000

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Serialises this isolate's writes, so concurrent requests take turns instead
 * of racing for the root and retrying. D1 (commit_chain) still guards against
 * other isolates and is what makes this sound.
 *
 * Deliberately no promise shared between requests: workerd cancels a request
 * that waits on a promise another request will settle ("code had hung"), so
 * waiters poll a flag on their own timers. The lock is a lease: a holder whose
 * request was cancelled mid-write cannot block the isolate for long.
 */
const LOCK_LEASE_MS = 30_000
let lockedUntil = 0
const serialised = async <T>(fn: () => Promise<T>): Promise<T> => {
  for (let delay = 1; Date.now() < lockedUntil; delay = Math.min(delay * 2, 16)) await sleep(delay)
  const lease = Date.now() + LOCK_LEASE_MS
  lockedUntil = lease
  try {
    return await fn()
  } finally {
    if (lockedUntil === lease) lockedUntil = 0
  }
}

/**
 * Applies writes as one commit. Returns null when nothing changes (an
 * identical put), in which case no commit is made.
 */
export const commitWrites = (ctx: RepoContext, requests: WriteRequest[], opts: CommitOptions = {}): Promise<CommitResult | null> => {
  if (requests.length > MAX_WRITES) {
    return Promise.reject(new InvalidRecordError(`Too many writes. Max: ${MAX_WRITES}`))
  }
  return serialised(async () => {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const result = await attemptCommit(ctx, requests, opts)
      if (result !== 'stale') return result
      // Another isolate won the race: back off a little, with jitter, and rebuild.
      await sleep(Math.min(200, 5 * 2 ** attempt) * Math.random())
    }
    throw new RepoBusyError('The repository is busy, please retry')
  })
}

/** Makes sure the repo has a genesis commit; returns the current root. */
export const ensureRepo = async (ctx: RepoContext): Promise<RootRow> => {
  const root = (await selectRoot(ctx.db))[0]
  if (root) return root
  await serialised(async () => {
    if ((await selectRoot(ctx.db))[0]) return
    const result = await attemptGenesis(ctx)
    if (result === 'stale') return // another isolate created it
  })
  const created = (await selectRoot(ctx.db))[0]
  if (!created) throw new Error('repo root missing after genesis')
  return created
}

const attemptGenesis = async (ctx: RepoContext): Promise<'stale' | void> => {
  const storage = new D1Blockstore(ctx.db)
  const commit = await Repo.formatInitCommit(storage, ctx.did, ctx.signingKey)
  const now = new Date().toISOString()
  const event = await encodeCommitEvent({
    did: ctx.did,
    commit: commit.cid,
    rev: commit.rev,
    since: null,
    prevData: null,
    ops: [],
    blocks: commit.newBlocks,
    time: now,
  })
  try {
    await writeCommit(ctx.db, {
      did: ctx.did,
      cid: commit.cid.toString(),
      rev: commit.rev,
      prev: null,
      now,
      newBlocks: blockRows(commit.newBlocks),
      removedCids: [],
      recordPuts: [],
      recordDeletes: [],
      backlinks: [],
      // A new account announces itself first, as the reference PDS does on createAccount.
      events: [
        { type: 'identity', bytes: encodeIdentityEvent({ did: ctx.did, handle: ctx.handle, time: now }) },
        { type: 'account', bytes: encodeAccountEvent({ did: ctx.did, active: true, time: now }) },
        { type: 'commit', bytes: event },
      ],
      extra: [setStateStatement(ctx.db, ANNOUNCED_HANDLE, ctx.handle, now)],
    })
  } catch (err) {
    if (isStaleCommitError(err)) return 'stale'
    throw err
  }
  storage.remember(commit.newBlocks)
  ctx.onCommit?.()
}

const blockRows = (blocks: BlockMap) => [...blocks].map(([cid, bytes]) => ({ cid: cid.toString(), bytes }))

const dataKey = (w: { collection: string; rkey: string }) => `${w.collection}/${w.rkey}`

const attemptCommit = async (ctx: RepoContext, requests: WriteRequest[], opts: CommitOptions): Promise<CommitResult | null | 'stale'> => {
  const { db } = ctx
  // Round trip 1: the root, plus any older records the new ones replace.
  const backlinkQueries = opts.replaceBacklinks
    ? requests.flatMap((w) =>
        w.action === 'create'
          ? backlinksOf(w).map((b) => selectBacklinkUris(db, { uriPrefix: `at://${ctx.did}/${w.collection}/`, ...b }))
          : [],
      )
    : []
  const blobCids = [...new Set(requests.flatMap((w) => (w.action === 'delete' ? [] : w.blobs.map((b) => b.ref.toString()))))]
  const blobQueries = selectBlobs(db, blobCids)
  const [rootRows, ...rest] = (await db.batch([selectRoot(db), ...backlinkQueries, ...blobQueries])) as [RootRow[], ...unknown[][]]
  const backlinkRows = rest.slice(0, backlinkQueries.length) as { uri: string }[][]
  const blobRows = new Map((rest.slice(backlinkQueries.length) as BlobRow[][]).flat().map((b) => [b.cid, b]))
  for (const w of requests) if (w.action !== 'delete') checkBlobRefs(w.blobs, blobRows)
  const root = rootRows[0]
  if (!root) {
    // First write ever: make the genesis commit (we already hold the queue), then go again.
    await attemptGenesis(ctx)
    return 'stale'
  }
  const rootCid = parseCid(root.cid)
  if (opts.swapCommit && !opts.swapCommit.equals(rootCid)) throw new BadCommitSwapError(rootCid)

  // Older follows/likes... of the same subject are deleted in the same commit.
  const replaced = new Set(backlinkRows.flat().map((r) => r.uri))
  const conflictDeletes = [...replaced].map((uri) => {
    const [collection, rkey] = uri.slice(`at://${ctx.did}/`.length).split('/')
    return prepareDelete({ did: ctx.did, collection, rkey })
  })

  const storage = new D1Blockstore(db)
  const repo = await Repo.load(storage, rootCid)
  const prevData = repo.commit.data
  await storage.prefetchPaths(prevData, [...conflictDeletes, ...requests].map(dataKey))

  // Resolve each write against the tree as the earlier writes leave it.
  const current = new Map<string, Cid | null>()
  const currentCid = async (key: string): Promise<Cid | null> =>
    current.has(key) ? current.get(key)! : await repo.data.get(key)

  const writes: PreparedWrite[] = []
  const ops: CommitOp[] = []
  for (const request of [...conflictDeletes, ...requests]) {
    const key = dataKey(request)
    const existing = await currentCid(key)
    let write: PreparedWrite
    if (request.action === 'put') {
      if (existing && existing.equals(request.cid)) continue // identical: nothing to do
      write = { ...request, action: existing ? 'update' : 'create' }
    } else if (request.action === 'delete' && request.ifExists && !existing) {
      continue
    } else {
      write = request
    }
    checkRecordSwap(write, existing)
    if (write.action === 'create' && existing) {
      throw new InvalidRecordError(`Record already exists: ${write.uri}`)
    }
    if (write.action !== 'create' && !existing) {
      throw new InvalidRecordError(`Could not find record: ${write.uri}`)
    }
    const cid = write.action === 'delete' ? null : write.cid
    ops.push({ action: write.action, path: key, cid, ...(existing ? { prev: existing } : {}) })
    current.set(key, cid)
    writes.push(write)
  }
  if (writes.length === 0) return null

  const commit = await repo.formatCommit(writes.map(toRepoOp), ctx.signingKey)
  // Blocks of records written in this commit whose CID already existed in the
  // repo (an identical record elsewhere) are not "new", but consumers need them.
  for (const w of writes) {
    if (w.action !== 'delete' && !commit.relevantBlocks.has(w.cid)) commit.relevantBlocks.set(w.cid, w.bytes)
  }
  if (commit.relevantBlocks.byteSize > MAX_EVENT_BLOCK_BYTES) {
    throw new InvalidRecordError('Too many writes. Max event size: 2MB')
  }

  const now = new Date().toISOString()
  const live = new Map<string, PreparedWrite>()
  for (const w of writes) live.set(w.uri, w)
  const puts = [...live.values()].filter((w) => w.action !== 'delete')
  const blobRefs = puts.flatMap((w) => w.blobs.map((b) => ({ uri: w.uri, cid: b.ref.toString() })))

  const event = await encodeCommitEvent({
    did: ctx.did,
    commit: commit.cid,
    rev: commit.rev,
    since: commit.since,
    prevData,
    ops,
    blocks: commit.relevantBlocks,
    time: now,
    blobs: [...new Map(puts.flatMap((w) => w.blobs.map((b) => [b.ref.toString(), b.ref] as const))).values()],
  })
  try {
    await writeCommit(db, {
      did: ctx.did,
      cid: commit.cid.toString(),
      rev: commit.rev,
      prev: root.cid,
      now,
      newBlocks: blockRows(commit.newBlocks),
      removedCids: commit.removedCids.toList().map((c) => c.toString()),
      recordPuts: puts.map((w) => ({ uri: w.uri, collection: w.collection, rkey: w.rkey, cid: w.cid.toString() })),
      recordDeletes: [...live.values()].filter((w) => w.action === 'delete').map((w) => w.uri),
      backlinks: puts.flatMap((w) => backlinksOf(w).map((b) => ({ uri: w.uri, ...b }))),
      events: [{ type: 'commit', bytes: event }],
      // Creates cannot drop a reference; only updates and deletes touch old ones.
      extra: blobReferenceStatements(db, {
        touchedUris: [...live.values()].filter((w) => w.action !== 'create').map((w) => w.uri),
        refs: blobRefs,
        rev: commit.rev,
        now,
      }),
    })
  } catch (err) {
    if (isStaleCommitError(err)) return 'stale'
    if (isMissingBlobError(err)) {
      // The blob GC won a race against this commit: the batch was refused whole.
      throw new BlobRefError('Could not find blob: it was removed while the record was being written', 'BlobNotFound')
    }
    throw err
  }
  storage.remember(commit.newBlocks)
  ctx.onCommit?.()
  return { cid: commit.cid, rev: commit.rev, since: commit.since, prevData, ops, writes }
}

/** Each blob a record references must be one we hold, described as we stored it (reference PDS checks). */
const checkBlobRefs = (refs: TypedBlobRef[], held: Map<string, BlobRow>): void => {
  for (const ref of refs) {
    const cid = ref.ref.toString()
    const found = held.get(cid)
    if (!found) throw new BlobRefError(`Could not find blob: ${cid}`, 'BlobNotFound')
    if (found.mimeType !== ref.mimeType) {
      throw new BlobRefError(`Referenced Mimetype does not match stored blob. Expected: ${found.mimeType}, Got: ${ref.mimeType}`, 'InvalidMimeType')
    }
    if (found.size !== ref.size) {
      throw new BlobRefError(`Referenced Size does not match stored blob. Expected: ${found.size}, Got: ${ref.size}`, 'InvalidSize')
    }
  }
}

const checkRecordSwap = (write: PreparedWrite, existing: Cid | null): void => {
  const { swapCid } = write
  if (swapCid === undefined) return
  if (write.action === 'create' && swapCid !== null) throw new BadRecordSwapError(existing)
  if (write.action !== 'create' && swapCid === null) throw new BadRecordSwapError(existing)
  if ((existing || swapCid) && !(swapCid && existing && existing.equals(swapCid))) {
    throw new BadRecordSwapError(existing)
  }
}

const toRepoOp = (w: PreparedWrite): RecordWriteOp =>
  w.action === 'delete'
    ? { action: WriteOpAction.Delete, collection: w.collection as never, rkey: w.rkey as never }
    : {
        action: w.action === 'create' ? WriteOpAction.Create : WriteOpAction.Update,
        collection: w.collection as never,
        rkey: w.rkey as never,
        record: w.record,
      }
