/**
 * Planning the genesis commit of a fresh identity: an empty repo signed with
 * the PDS's key, announced as a new account announces itself on the
 * reference PDS (#identity, #account active, then the #commit).
 */
import { Repo } from '@atproto/repo'
import type { BatchItem } from 'drizzle-orm/batch'
import { selectRoot } from '../db/repo'
import { encodeAccountEvent, encodeCommitEvent, encodeIdentityEvent } from '../firehose/events'
import { blockRows, type PlannedCommit, type RepoContext } from './context'
import { D1Blockstore } from './storage'

export interface GenesisResult {
  cid: string
  rev: string
}

/** The genesis commit (with `extra` statements in its batch), or null when the repo already has one. */
export const planGenesis = async (ctx: RepoContext, extra: BatchItem<'sqlite'>[] = []): Promise<PlannedCommit<GenesisResult> | null> => {
  if ((await selectRoot(ctx.db))[0]) return null
  const commit = await Repo.formatInitCommit(new D1Blockstore(ctx.db), ctx.did, ctx.signingKey)
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
  return {
    write: {
      did: ctx.did,
      cid: commit.cid.toString(),
      rev: commit.rev,
      prev: null,
      now,
      newBlocks: blockRows(commit.newBlocks),
      removedCids: [],
      recordPuts: [],
      recordDeletes: [],
      replacedUris: [],
      backlinks: [],
      events: [
        { type: 'identity', bytes: encodeIdentityEvent({ did: ctx.did, handle: ctx.handle, time: now }) },
        { type: 'account', bytes: encodeAccountEvent({ did: ctx.did, active: true, time: now }) },
        { type: 'commit', bytes: event },
      ],
      extra,
    },
    newBlocks: commit.newBlocks,
    result: { cid: commit.cid.toString(), rev: commit.rev },
  }
}
