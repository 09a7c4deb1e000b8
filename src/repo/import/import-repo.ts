/**
 * com.atproto.repo.importRepo: a whole repo, as a CAR stream, becomes this
 * PDS's repo (atproto.com/guides/account-migration).
 *
 * The CAR is never held whole: blocks are checked against their CIDs as they
 * stream in, classified (MST node, record, other) and staged in D1 in
 * bounded batches (src/db/import.ts). Then the commit is checked: it must be
 * this account's, version 3, and signed by the key its DID document lists
 * now. The tree is walked inside D1 from the commit's MST root, and must be
 * complete: every node and every record reachable from it. Only then does
 * one atomic batch make it the repo, rewriting only the records that changed
 * (importing the same CAR twice changes nothing; a newer CAR of the same repo
 * applies as a diff). Any refusal leaves the repo as it was.
 *
 * Importing emits no firehose event: the account is deactivated while it is
 * migrated in, and activation announces the repo (#sync) once it is signed
 * with this PDS's key.
 */
import { decode } from '@atproto/lex-cbor'
import { isCid } from '@atproto/lex-data'
import { verifyCommitSig } from '@atproto/repo'
import type { Db } from '../../db/client'
import {
  clearStagingStatements,
  findMissing,
  finishImportStatements,
  isDuplicatePathError,
  isStagingGoneError,
  stageBlocksStatements,
  walkStatements,
  type StagedBlock,
} from '../../db/import'
import { getRoot, isStaleCommitError } from '../../db/repo'
import { InvalidImportError, readCarStream } from './car-stream'
import { classifyBlock } from './classify'

export { InvalidImportError }

export interface ImportContext {
  db: Db
  did: string
  /** The did:key the account's DID document lists now (resolved afresh). */
  currentKey(): Promise<string>
}

export interface ImportResult {
  /** The imported commit. */
  commit: string
  rev: string
  records: number
  blocks: number
  bytes: number
  /** True when the repo already was exactly this commit. */
  unchanged: boolean
}

/** Staged blocks are written once this many bytes are buffered (SQL text is about twice that). */
const STAGE_BATCH_BYTES = 1_000_000

interface Commit {
  did: string
  version: number
  data: { toString(): string }
  rev: string
  sig: Uint8Array
}

const isCommit = (value: unknown): value is Commit => {
  const c = value as Partial<Commit> | null
  return typeof c === 'object' && c !== null && typeof c.did === 'string' && typeof c.rev === 'string' && isCid(c.data) && c.sig instanceof Uint8Array
}

export const importRepo = async (ctx: ImportContext, body: ReadableStream<Uint8Array>): Promise<ImportResult> => {
  const { db } = ctx
  const importId = crypto.randomUUID()
  await db.batchSql(clearStagingStatements())
  try {
    const { root, blocks } = await readCarStream(body)
    let commitBytes: Uint8Array | null = null
    let pending: StagedBlock[] = []
    let pendingBytes = 0
    let count = 0
    let bytes = 0
    const flush = async (): Promise<void> => {
      if (pending.length > 0) await db.batchSql(stageBlocksStatements(importId, pending))
      pending = []
      pendingBytes = 0
    }
    for await (const block of blocks) {
      if (block.cid === root) commitBytes = block.bytes
      pending.push({ cid: block.cid, content: block.bytes, ...classifyBlock(block) })
      pendingBytes += block.bytes.byteLength
      count++
      bytes += block.bytes.byteLength
      if (pendingBytes >= STAGE_BATCH_BYTES) await flush()
    }
    await flush()

    const commit = await checkCommit(ctx, root, commitBytes)
    const current = await getRoot(db)
    if (current?.cid === root) return { commit: root, rev: commit.rev, records: 0, blocks: count, bytes, unchanged: true }
    if (current && current.rev >= commit.rev) {
      throw new InvalidImportError(`The repo here (rev ${current.rev}) is newer than this CAR (rev ${commit.rev})`)
    }

    try {
      await db.batchSql(walkStatements(importId, commit.data.toString(), ctx.did))
    } catch (err) {
      // Keys are checked in order within each node only; a key held by two nodes surfaces here.
      if (isDuplicatePathError(err)) throw new InvalidImportError('The repo holds the same record path twice (not a valid MST)')
      throw err
    }
    const missing = await findMissing(db, importId)
    if (missing.nodes + missing.records > 0) {
      throw new InvalidImportError(`The CAR does not hold the whole repo: ${missing.examples.join(', ')} missing`)
    }
    try {
      await db.batchSql(finishImportStatements({ importId, did: ctx.did, commitCid: root, rev: commit.rev, prevRoot: current?.cid ?? null, now: new Date().toISOString() }))
    } catch (err) {
      if (isStaleCommitError(err)) throw new InvalidImportError('The repo changed while it was being imported; import again')
      if (isStagingGoneError(err)) throw new InvalidImportError('Another import ran meanwhile and cleared this one; import again')
      throw err
    }
    return { commit: root, rev: commit.rev, records: missing.recordCount, blocks: count, bytes, unchanged: false }
  } finally {
    // Whatever happened, nothing of this import stays staged (the final batch already cleared it on success).
    await db.batchSql(clearStagingStatements()).catch(() => undefined)
  }
}

/** The root commit: present, this account's, a v3 commit, and signed by the key the DID document lists now. */
const checkCommit = async (ctx: ImportContext, root: string, bytes: Uint8Array | null): Promise<Commit> => {
  if (!bytes) throw new InvalidImportError(`The CAR does not hold its root commit ${root}`)
  let commit: unknown
  try {
    commit = decode(bytes)
  } catch {
    throw new InvalidImportError('The root commit is not valid dag-cbor')
  }
  if (!isCommit(commit)) throw new InvalidImportError('The CAR root is not a repo commit')
  if (commit.version !== 3) throw new InvalidImportError(`Unsupported repo commit version ${commit.version} (3 is required)`)
  if (commit.did !== ctx.did) throw new InvalidImportError(`The repo in this CAR belongs to ${commit.did}, not to this PDS's account ${ctx.did}`)
  const key = await ctx.currentKey()
  const valid = await verifyCommitSig(commit as never, key).catch(() => false)
  if (!valid) throw new InvalidImportError(`The repo's commit is not signed by the key in the DID document of ${ctx.did} (${key})`)
  return commit
}
