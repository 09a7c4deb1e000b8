/**
 * Planning the commit that activation makes (atproto account lifecycle): the
 * repo's current tree re-signed with this PDS's key under a new rev, so
 * relays can verify it against the key the DID document now lists. An
 * imported repo is signed by the old PDS's key; without this commit, the
 * `#sync` a relay resets to would not verify. With no repo at all (an
 * existing identity activated without an import), it is an empty genesis.
 *
 * The caller adds the account change and the events that announce it
 * (`#account`, `#identity`, then the `#sync` of this commit, from `events`).
 */
import type { Cid } from '@atproto/lex-data'
import { Repo } from '@atproto/repo'
import type { BatchItem } from 'drizzle-orm/batch'
import { parseCid } from '@atproto/lex-data'
import { selectRoot } from '../db/repo'
import { blockRows, type PlannedCommit, type RepoContext } from './context'
import { D1Blockstore } from './storage'

export interface ResignedCommit {
  cid: Cid
  rev: string
  commitBytes: Uint8Array
}

export interface ResignOptions {
  extra: BatchItem<'sqlite'>[]
  /** The events of the batch (in order), given the new commit. */
  events: (commit: ResignedCommit, now: string) => Promise<{ type: string; bytes: Uint8Array }[]>
}

export const planResign = async (ctx: RepoContext, opts: ResignOptions): Promise<PlannedCommit<ResignedCommit>> => {
  const root = (await selectRoot(ctx.db))[0] ?? null
  const storage = new D1Blockstore(ctx.db)
  const made = root
    ? await (await Repo.load(storage, parseCid(root.cid))).formatCommit([], ctx.signingKey)
    : { ...(await Repo.formatInitCommit(storage, ctx.did, ctx.signingKey)), removedCids: null }
  const commitBytes = made.newBlocks.get(made.cid)
  if (!commitBytes) throw new Error('the new commit block is missing')
  const commit: ResignedCommit = { cid: made.cid, rev: made.rev, commitBytes }
  const now = new Date().toISOString()
  return {
    write: {
      did: ctx.did,
      cid: made.cid.toString(),
      rev: made.rev,
      prev: root?.cid ?? null,
      now,
      newBlocks: blockRows(made.newBlocks),
      removedCids: made.removedCids ? made.removedCids.toList().map((c) => c.toString()) : [],
      recordPuts: [],
      recordDeletes: [],
      replacedUris: [],
      backlinks: [],
      events: await opts.events(commit, now),
      extra: opts.extra,
    },
    newBlocks: made.newBlocks,
    result: commit,
  }
}
