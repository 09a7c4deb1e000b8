/**
 * What the write path works with: the repo's identity and key, and the shape
 * of a planned commit (the rows of one atomic D1 batch). Kept apart so the
 * planners (plan-writes.ts, plan-genesis.ts) and the committer (commit.ts)
 * share them without importing each other.
 */
import type { Keypair } from '@atproto/crypto'
import type { BlockMap } from '@atproto/repo'
import type { Db } from '../db/client'
import type { CommitWrite } from '../db/repo'
import type { CommittedEvent } from '../firehose/events'
import type { RepoHead } from './head'

export interface RepoContext {
  db: Db
  did: string
  signingKey: Keypair
  /** The handle announced in the genesis #identity event. */
  handle: string
  /**
   * Called after a commit is durable with its events as stored and the seqs
   * the log gave them (null if unknown), so the firehose delivers them
   * without reading the log.
   */
  onCommit?: (events: CommittedEvent[] | null) => void
}

/** A commit ready to be written: one D1 batch, and what it gives back once committed. */
export interface PlannedCommit<R> {
  /** Blocks, root, indexes, events and extra statements, written atomically by src/db/repo.ts. */
  write: CommitWrite
  /** Blocks the isolate cache may keep once the batch committed. */
  newBlocks: BlockMap
  /** The head the isolate may start its next write from once the batch committed (src/repo/head.ts). */
  head?: RepoHead
  result: R
}

/** A block map as the rows `CommitWrite.newBlocks` takes. */
export const blockRows = (blocks: BlockMap): { cid: string; bytes: Uint8Array }[] =>
  [...blocks].map(([cid, bytes]) => ({ cid: cid.toString(), bytes }))
