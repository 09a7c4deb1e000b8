/**
 * Queries behind the status page and the maintenance report: cheap facts read
 * on every view (root, newest event, a few pds_state rows) and the repo's size,
 * which needs full counts and is therefore memoised per rev in pds_state.
 *
 * D1 bills rows scanned, and `count(*)` scans the whole table: a status page
 * recounting 20,000 blocks per view would spend the Free plan's daily read
 * allowance in a few hundred views. The size can only change when the root
 * changes, so it is recounted once per new rev and kept with that rev.
 */
import { desc, inArray, isNull, sql } from 'drizzle-orm'
import type { Db } from './client'
import { schema } from './client'
import { setStateStatement } from './state'

const { block, pdsState, record, repoRoot, repoSeq } = schema

/** pds_state keys written by the status page and the cron. */
export const STATE_REPO_SIZE = 'status:repo-size'
export const STATE_MAINTENANCE = 'maintenance:last-run'
export const STATE_RELAY_CRAWL = 'relay:last-crawl'

export interface RepoSize {
  /** The rev these figures were counted at. */
  rev: string
  records: number
  /** Blocks in the current repo (those removed by a commit are not counted). */
  blocks: number
  /** Bytes of those blocks: the size of a full getRepo CAR, less its framing. */
  bytes: number
}

export interface StatusFacts {
  root: { cid: string; rev: string; indexedAt: string } | null
  lastEvent: { seq: number; time: string } | null
  /** pds_state values by key (only the status keys above). */
  state: Record<string, string>
}

/** Everything cheap, in one round trip (each read is a primary-key or index lookup). */
export const getStatusFacts = async (db: Db): Promise<StatusFacts> => {
  const [roots, events, states] = (await db.batch([
    db.orm.select({ cid: repoRoot.cid, rev: repoRoot.rev, indexedAt: repoRoot.indexedAt }).from(repoRoot).limit(1),
    db.orm.select({ seq: repoSeq.seq, time: repoSeq.sequencedAt }).from(repoSeq).orderBy(desc(repoSeq.seq)).limit(1),
    db.orm
      .select({ key: pdsState.key, value: pdsState.value })
      .from(pdsState)
      .where(inArray(pdsState.key, [STATE_REPO_SIZE, STATE_MAINTENANCE, STATE_RELAY_CRAWL])),
  ])) as [StatusFacts['root'][], { seq: number; time: string }[], { key: string; value: string }[]]
  return {
    root: roots[0] ?? null,
    lastEvent: events[0] ?? null,
    state: Object.fromEntries(states.map((s) => [s.key, s.value])),
  }
}

/**
 * Counts the repo (full scans: call only when the rev changed). The root is
 * read in the same batch, which D1 runs as one transaction, so the figures
 * belong exactly to the rev they are labelled with. Null before genesis.
 */
export const countRepoSize = async (db: Db): Promise<RepoSize | null> => {
  const [roots, records, blocks] = (await db.batch([
    db.orm.select({ rev: repoRoot.rev }).from(repoRoot).limit(1),
    db.orm.select({ n: sql<number>`count(*)` }).from(record),
    db.orm.select({ n: sql<number>`count(*)`, bytes: sql<number>`coalesce(sum(${block.size}), 0)` }).from(block).where(isNull(block.removedAt)),
  ])) as [{ rev: string }[], { n: number }[], { n: number; bytes: number }[]]
  if (!roots[0]) return null
  return { rev: roots[0].rev, records: Number(records[0].n), blocks: Number(blocks[0].n), bytes: Number(blocks[0].bytes) }
}

/** Remembers the counts for their rev (one row written). */
export const saveRepoSize = async (db: Db, size: RepoSize, now: string): Promise<void> => {
  await db.batch([setStateStatement(db, STATE_REPO_SIZE, JSON.stringify(size), now)])
}

/** Writes a pds_state value (the cron's reports). */
export const saveStateValue = async (db: Db, key: string, value: string, now: string): Promise<void> => {
  await db.batch([setStateStatement(db, key, value, now)])
}
