/**
 * The repo's head as this isolate last committed it: the signed commit and
 * its MST, with every node the isolate has already decoded kept decoded.
 *
 * A write starts from this tree instead of loading the commit and decoding,
 * schema-checking and re-hashing the MST nodes on its path again: without
 * reading the root first, its commit guarded by D1 against another isolate
 * having committed since (src/repo/plan-writes.ts), or when the root it read
 * is this commit. Otherwise the head is loaded from blocks. Nothing here is
 * ahead of D1: the head is remembered only after its batch has committed
 * (src/repo/commit.ts).
 *
 * Commits are formatted here too, as `Repo.formatCommit` of @atproto/repo
 * does (same tree operations, diff, proofs and signature) but with the
 * record blocks the writes already encoded and hashed, and keeping the new
 * tree for the next write.
 */
import type { Keypair } from '@atproto/crypto'
import { encode } from '@atproto/lex-cbor'
import { cidForCbor, type Cid } from '@atproto/lex-data'
import { BlockMap, CidSet, DataDiff, def, MST, signCommit, type Commit } from '@atproto/repo'
import { TID } from '@atproto/common-web'
import type { Db } from '../db/client'
import type { PreparedWrite } from './prepare'
import { D1Blockstore, type BlockCache } from './storage'

export interface RepoHead {
  cid: Cid
  commit: Commit
  data: MST
  /** The store the tree's nodes load from, pointed at the current request's D1 client for each write. */
  storage: D1Blockstore
}

/**
 * A tree this isolate keeps decoded for longer than this many node loads is
 * dropped and loaded afresh: the decoded nodes of a large repo touched all
 * over would otherwise grow without bound in a 128 MB isolate.
 */
const MAX_NODE_LOADS = 20_000

let remembered: RepoHead | null = null

/**
 * An MST node never changes once made (every edit makes new nodes), but
 * @atproto/repo serialises each new node of a commit twice: for its CID, then
 * again for the diff's block. The first result is kept per node, so each new
 * node is encoded and hashed once. Transparent: the same bytes either way.
 */
const serialized = new WeakMap<MST, Promise<{ cid: Cid; bytes: Uint8Array }>>()
const serializeNode = MST.prototype.serialize
MST.prototype.serialize = function serializeOnce(this: MST) {
  let result = serialized.get(this)
  if (!result) {
    result = serializeNode.call(this)
    serialized.set(this, result)
    // A failed serialisation (a missing block) may be retried.
    result.catch(() => serialized.delete(this))
  }
  return result
}

/**
 * The head of this isolate's last commit, pointed at `db`, or null. It is the
 * root in D1 unless another isolate has committed since: a write planned on
 * it without reading the root is guarded by D1 (src/repo/plan-writes.ts).
 */
export const rememberedHead = (db: Db): RepoHead | null => {
  if (!remembered || remembered.storage.loads >= MAX_NODE_LOADS) return null
  remembered.storage.useDb(db)
  return remembered
}

/** The head at `rootCid`: this isolate's own when it is current, otherwise loaded from blocks. */
export const headAt = async (db: Db, rootCid: Cid, cache?: BlockCache): Promise<RepoHead> => {
  const mine = rememberedHead(db)
  if (mine?.cid.equals(rootCid)) return mine
  const storage = new D1Blockstore(db, cache)
  const commit = await storage.readObj(rootCid, def.versionedCommit)
  if (commit.version !== 3) throw new Error(`unsupported repo version ${commit.version}`)
  return { cid: rootCid, commit: commit as Commit, data: MST.load(storage, commit.data), storage }
}

/** After its batch committed: the next write of this isolate starts from `head`. */
export const rememberHead = (head: RepoHead): void => {
  remembered = head
}

/** Forgets the remembered head (tests, and a repo replaced wholesale by an import). */
export const forgetHead = (): void => {
  remembered = null
}

/**
 * Loads the nodes on the paths to `keys` one tree level at a time, each level
 * in one batched D1 read, instead of the one query per node that lazy
 * loading makes on a cold isolate (which could blow the Workers subrequest
 * limit for a 200-op write). Nodes already decoded cost nothing.
 */
export const loadPaths = async (head: RepoHead, keys: string[]): Promise<void> => {
  let level: { node: MST; keys: string[] }[] = [{ node: head.data, keys }]
  while (level.length > 0) {
    const unloaded = level.filter((l) => l.node.entries === null)
    if (unloaded.length > 1) await head.storage.getBlocks(unloaded.map((l) => l.node.pointer))
    const next = new Map<MST, string[]>()
    for (const { node, keys: nodeKeys } of level) {
      const entries = await node.getEntries()
      for (const key of nodeKeys) {
        // The subtree left of the first leaf at or after the key holds it, if it is not that leaf.
        let i = entries.findIndex((e) => e.isLeaf() && e.key >= key)
        if (i < 0) i = entries.length
        const at = entries[i]
        if (at?.isLeaf() && at.key === key) continue
        const left = entries[i - 1]
        if (left?.isTree()) next.set(left, [...(next.get(left) ?? []), key])
      }
    }
    level = [...next].map(([node, k]) => ({ node, keys: k }))
  }
}

export interface FormattedCommit {
  cid: Cid
  rev: string
  since: string
  prevData: Cid
  newBlocks: BlockMap
  relevantBlocks: BlockMap
  removedCids: CidSet
  /** The head once this commit is in. */
  next: RepoHead
}

/** The signed commit of `writes` (one per path) on `head`. */
export const formatCommit = async (head: RepoHead, writes: PreparedWrite[], keypair: Keypair): Promise<FormattedCommit> => {
  const leaves = new BlockMap()
  let data = head.data
  for (const w of writes) {
    const key = `${w.collection}/${w.rkey}`
    if (w.action === 'delete') {
      data = await data.delete(key)
      continue
    }
    leaves.set(w.cid, w.bytes)
    data = w.action === 'create' ? await data.add(key, w.cid) : await data.update(key, w.cid)
  }
  const dataCid = await data.getPointer()
  const diff = await DataDiff.of(data, head.data)
  const newBlocks = diff.newMstBlocks
  const removedCids = diff.removedCids
  const relevantBlocks = new BlockMap()
  for (const w of writes) relevantBlocks.addMap(await data.getCoveringProof(`${w.collection}/${w.rkey}`))
  for (const cid of diff.newLeafCids.toList()) {
    const bytes = leaves.get(cid)
    if (!bytes) throw new Error(`Missing leaf block: ${cid}`)
    newBlocks.set(cid, bytes)
    relevantBlocks.set(cid, bytes)
  }
  const rev = TID.nextStr(head.commit.rev)
  const commit = await signCommit({ did: head.commit.did, version: 3, rev, prev: null, data: dataCid }, keypair)
  const commitBytes = encode(commit)
  const commitCid = await cidForCbor(commitBytes)
  newBlocks.set(commitCid, commitBytes)
  relevantBlocks.set(commitCid, commitBytes)
  removedCids.add(head.cid)
  return {
    cid: commitCid,
    rev,
    since: head.commit.rev,
    prevData: head.commit.data,
    newBlocks,
    relevantBlocks,
    removedCids,
    next: { cid: commitCid, commit, data, storage: head.storage },
  }
}
