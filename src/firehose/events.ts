/**
 * Firehose event bodies (com.atproto.sync.subscribeRepos, sync v1.1): pure
 * encoders, no I/O. A `#commit` body is stored (dag-cbor) in `repo_seq` in the
 * same D1 batch as its commit; the firehose adds `seq` and the frame header
 * when it sends it.
 */
import { encode } from '@atproto/lex-cbor'
import type { Cid } from '@atproto/lex-data'
import { BlockMap, blocksToCarFile } from '@atproto/repo'

/** An event as committed: its seq in the log, its type and the stored body (without `seq`); what the Worker hands the hub. */
export interface CommittedEvent {
  seq: number
  type: string
  body: Uint8Array
}

export interface CommitOp {
  action: 'create' | 'update' | 'delete'
  /** `<collection>/<rkey>` */
  path: string
  /** New record CID; null for a delete. */
  cid: Cid | null
  /** Record CID before this op (updates and deletes), for inversion by consumers. */
  prev?: Cid
}

export interface CommitEventInput {
  did: string
  commit: Cid
  rev: string
  since: string | null
  prevData: Cid | null
  ops: CommitOp[]
  /** The commit block, new MST nodes and every node needed to invert the ops. */
  blocks: BlockMap
  time: string
  blobs?: Cid[]
}

/** dag-cbor bytes of a `#commit` body without `seq`. */
export const encodeCommitEvent = async (input: CommitEventInput): Promise<Uint8Array> => {
  const car = await blocksToCarFile(input.commit, input.blocks)
  const body: Record<string, unknown> = {
    repo: input.did,
    commit: input.commit,
    rev: input.rev,
    since: input.since,
    blocks: car,
    ops: input.ops.map((op) => ({
      action: op.action,
      path: op.path,
      cid: op.cid,
      ...(op.prev ? { prev: op.prev } : {}),
    })),
    blobs: input.blobs ?? [],
    time: input.time,
    rebase: false,
    tooBig: false,
  }
  if (input.prevData) body.prevData = input.prevData
  return encode(body as never)
}

/** dag-cbor bytes of an `#identity` body without `seq` (handle or DID document changed). */
export const encodeIdentityEvent = (input: { did: string; handle?: string; time: string }): Uint8Array =>
  encode({ did: input.did, time: input.time, ...(input.handle ? { handle: input.handle } : {}) } as never)

/** dag-cbor bytes of an `#account` body without `seq` (hosting status changed). */
export const encodeAccountEvent = (input: { did: string; active: boolean; status?: string; time: string }): Uint8Array =>
  encode({ did: input.did, time: input.time, active: input.active, ...(input.status ? { status: input.status } : {}) } as never)

/**
 * dag-cbor bytes of a `#sync` body without `seq`: the repo's current commit,
 * for relays to (re)start from (sync v1.1). `blocks` is a CAR holding only
 * the commit block; relays check its signature against the DID document.
 */
export const encodeSyncEvent = async (input: { did: string; commit: Cid; commitBytes: Uint8Array; rev: string; time: string }): Promise<Uint8Array> => {
  const blocks = new BlockMap()
  blocks.set(input.commit, input.commitBytes)
  return encode({ did: input.did, rev: input.rev, blocks: await blocksToCarFile(input.commit, blocks), time: input.time } as never)
}
