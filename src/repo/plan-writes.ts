/**
 * Planning a commit of record writes (create, update, put, delete), as the
 * reference PDS's `processWrites` does:
 *
 * 1. what the tree is and may be written: the head this isolate committed
 *    last, with the checks below as guards of the commit itself (see
 *    `planWrites`), or one read batch: the root, the account's status
 *    (inactive: refused), the password session (signed out: refused), older
 *    follows/likes of the same subjects (replaced by a new one, as the
 *    reference does), the blobs referenced;
 * 2. checks: blob references, swapCommit, swapRecord, existence;
 * 3. the tree walk: each write resolved against the tree as the earlier
 *    writes leave it (a put becomes a create or an update, an identical put
 *    or a delete of nothing drops out);
 * 4. the signed commit (@atproto/repo) and its #commit event;
 * 5. the rows of the one D1 batch that writes it all.
 *
 * Nothing here writes: src/repo/commit.ts runs the plan under its lock.
 */
import { type Cid, parseCid, type TypedBlobRef } from '@atproto/lex-data'
import { assertActive } from '../account-status'
import { blobReferenceStatements, type BlobRow } from '../db/blobs'
import { canAssume, type BacklinkQuery, type CommitAssumptions, type RootRow } from '../db/repo'
import { readForWrite } from '../db/write-reads'
import { SessionRevokedError } from '../errors'
import { encodeCommitEvent, type CommitOp } from '../firehose/events'
import { blockRows, type PlannedCommit, type RepoContext } from './context'
import { BadCommitSwapError, BadRecordSwapError, BlobRefError, InvalidRecordError } from './errors'
import { backlinksOf, prepareDelete, type PreparedWrite } from './prepare'
import { formatCommit, headAt, loadPaths, rememberedHead, type RepoHead } from './head'

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
  /**
   * The password session the write is made under: checked to be live in the
   * write's own D1 round trip (the commit's guard, or the read batch), so a
   * signed-out session writes nothing and costs no extra round trip
   * (src/auth/live-session.ts).
   */
  liveSession?: string | null
}

/** The reference refuses commits whose event would exceed 2 MB. */
const MAX_EVENT_BLOCK_BYTES = 2_000_000

const dataKey = (w: { collection: string; rkey: string }): string => `${w.collection}/${w.rkey}`

/**
 * The plan for `requests`, or null when nothing would change (an identical put).
 *
 * A warm isolate plans on the head it committed last without reading first
 * (unless `readFirst`): the commit then carries what the reads would have
 * checked (the account active, the session live, the blobs as referenced, no
 * older follow/like to replace) as a guard D1 evaluates in the same batch,
 * with the head being the root, and D1 refuses the batch whole when any of
 * it fails (src/db/repo.ts). One round trip per
 * write instead of two. Only a commit is ever decided that way: a plan that
 * would refuse the write or change nothing on the remembered tree is made
 * again on fresh reads, which decide it (the tree may be stale).
 */
export const planWrites = async (
  ctx: RepoContext,
  requests: WriteRequest[],
  opts: CommitOptions,
  readFirst = false,
): Promise<PlannedCommit<CommitResult> | null> => {
  if (!readFirst) {
    const planned = await planUnread(ctx, requests, opts).catch(() => null)
    if (planned) return planned
  }
  const { root, replaced, blobs } = await readForWrites(ctx, requests, opts)
  for (const w of requests) if (w.action !== 'delete') checkBlobRefs(w.blobs, blobs)
  const rootCid = parseCid(root.cid)
  if (opts.swapCommit && !opts.swapCommit.equals(rootCid)) throw new BadCommitSwapError(rootCid)
  return planOn(ctx, await headAt(ctx.db, rootCid), requests, { replaced })
}

/** The plan on the remembered head, with what it assumes; null (then the write reads first) when there is none to make. */
const planUnread = async (ctx: RepoContext, requests: WriteRequest[], opts: CommitOptions): Promise<PlannedCommit<CommitResult> | null> => {
  const head = rememberedHead(ctx.db)
  if (!head || (opts.swapCommit && !opts.swapCommit.equals(head.cid))) return null
  const puts = requests.filter((w) => w.action !== 'delete')
  const blobs = new Map(puts.flatMap((w) => w.blobs.map((b) => [`${b.ref} ${b.mimeType} ${b.size}`, { cid: b.ref.toString(), mimeType: b.mimeType, size: b.size }])))
  const assumes: CommitAssumptions = {
    liveSession: opts.liveSession ?? null,
    blobs: [...blobs.values()],
    noBacklinks: backlinkQueries(ctx, requests, opts),
  }
  if (!canAssume(assumes)) return null
  return planOn(ctx, head, requests, { replaced: new Set(), assumes })
}

/** The backlinks a new follow/like... must not find (an older one of the same subject is replaced). */
const backlinkQueries = (ctx: RepoContext, requests: WriteRequest[], opts: CommitOptions): BacklinkQuery[] =>
  opts.replaceBacklinks
    ? requests.flatMap((w) => (w.action === 'create' ? backlinksOf(w).map((b) => ({ uriPrefix: `at://${ctx.did}/${w.collection}/`, ...b })) : []))
    : []

/** The commit of `requests` on `head`, deleting the `replaced` records in it. */
const planOn = async (
  ctx: RepoContext,
  head: RepoHead,
  requests: WriteRequest[],
  basis: { replaced: Set<string>; assumes?: CommitAssumptions },
): Promise<PlannedCommit<CommitResult> | null> => {
  // Older follows/likes... of the same subject are deleted in the same commit.
  const conflictDeletes = [...basis.replaced].map((uri) => {
    const [collection, rkey] = uri.slice(`at://${ctx.did}/`.length).split('/')
    return prepareDelete({ did: ctx.did, collection, rkey })
  })

  const prevData = head.commit.data
  const all = [...conflictDeletes, ...requests]
  await loadPaths(head, all.map(dataKey))
  const { writes, ops } = await resolveWrites(all, (key) => head.data.get(key))
  if (writes.length === 0) return null

  const commit = await formatCommit(head, writes, ctx.signingKey)
  // Blocks of records written in this commit whose CID already existed in the
  // repo (an identical record elsewhere) are not "new", but consumers need them.
  for (const w of writes) {
    if (w.action !== 'delete' && !commit.relevantBlocks.has(w.cid)) commit.relevantBlocks.set(w.cid, w.bytes)
  }
  if (commit.relevantBlocks.byteSize > MAX_EVENT_BLOCK_BYTES) {
    throw new InvalidRecordError('Too many writes. Max event size: 2MB')
  }

  const now = new Date().toISOString()
  // One write per path (resolveWrites nets them out), so these are the index changes as they are.
  const puts = writes.filter((w) => w.action !== 'delete')
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
  return {
    write: {
      did: ctx.did,
      cid: commit.cid.toString(),
      rev: commit.rev,
      prev: head.cid.toString(),
      now,
      newBlocks: blockRows(commit.newBlocks),
      removedCids: commit.removedCids.toList().map((c) => c.toString()),
      recordPuts: puts.map((w) => ({ uri: w.uri, collection: w.collection, rkey: w.rkey, cid: w.cid.toString() })),
      recordDeletes: writes.filter((w) => w.action === 'delete').map((w) => w.uri),
      replacedUris: writes.filter((w) => w.action !== 'create').map((w) => w.uri),
      backlinks: puts.flatMap((w) => backlinksOf(w).map((b) => ({ uri: w.uri, ...b }))),
      events: [{ type: 'commit', bytes: event }],
      // Creates cannot drop a reference; only updates and deletes touch old ones.
      extra: blobReferenceStatements(ctx.db, {
        touchedUris: writes.filter((w) => w.action !== 'create').map((w) => w.uri),
        refs: blobRefs,
        rev: commit.rev,
        now,
      }),
      assumes: basis.assumes,
    },
    newBlocks: commit.newBlocks,
    head: commit.next,
    result: { cid: commit.cid, rev: commit.rev, since: commit.since, prevData, ops, writes },
  }
}

/** Round trip 1: the root, plus any older records the new ones replace, plus the blobs referenced. */
const readForWrites = async (
  ctx: RepoContext,
  requests: WriteRequest[],
  opts: CommitOptions,
): Promise<{ root: RootRow; replaced: Set<string>; blobs: Map<string, BlobRow> }> => {
  const reads = await readForWrite(ctx.db, {
    liveSession: opts.liveSession ?? null,
    blobCids: [...new Set(requests.flatMap((w) => (w.action === 'delete' ? [] : w.blobs.map((b) => b.ref.toString()))))],
    backlinks: backlinkQueries(ctx, requests, opts),
  })
  // Read with the root, in the same round trip: a signed-out session and an inactive account's repo write nothing.
  if (reads.sessionLive === false) throw new SessionRevokedError()
  if (reads.account) assertActive(reads.account)
  // The genesis commit is made at first start (src/account/bootstrap.ts), never by a write.
  if (!reads.root) throw new Error('The repo has no genesis commit yet')
  return { root: reads.root, replaced: new Set(reads.backlinkUris.flat()), blobs: reads.blobs }
}

/**
 * Resolves each write against the tree as the earlier writes leave it: puts
 * become creates or updates, identical puts and deletes of nothing (with
 * `ifExists`) drop out, and swaps and existence are checked in request order.
 *
 * The commit then carries the NET change per path (sync 1.1: a relay inverts
 * each op against the tree, so a path may appear once): create+update is one
 * create of the final record, create+delete is nothing, update+delete is one
 * delete of the original, and a path that ends where it started is nothing.
 */
const resolveWrites = async (
  requests: WriteRequest[],
  stored: (key: string) => Promise<Cid | null>,
): Promise<{ writes: PreparedWrite[]; ops: CommitOp[] }> => {
  // Per path: the CID before the commit, and the last write to it.
  const paths = new Map<string, { original: Cid | null; last: PreparedWrite }>()
  for (const request of requests) {
    const key = dataKey(request)
    const seen = paths.get(key)
    const original = seen ? seen.original : await stored(key)
    const existing = seen ? currentCid(seen.last) : original
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
    paths.set(key, { original, last: write })
  }

  const writes: PreparedWrite[] = []
  const ops: CommitOp[] = []
  for (const [key, { original, last }] of paths) {
    const final = currentCid(last)
    if (final === null ? original === null : original !== null && original.equals(final)) continue // back where it started
    const write: PreparedWrite =
      last.action === 'delete' ? last : { ...last, action: original ? 'update' : 'create', swapCid: undefined }
    ops.push({ action: write.action, path: key, cid: final, ...(original ? { prev: original } : {}) })
    writes.push(write)
  }
  return { writes, ops }
}

/** The record CID a path holds after `write`. */
const currentCid = (write: PreparedWrite): Cid | null => (write.action === 'delete' ? null : write.cid)

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
