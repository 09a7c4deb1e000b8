/**
 * Repo storage queries: the root, blocks, and the one atomic commit batch.
 *
 * Every commit is written by `writeCommit` as a single D1 batch. The batch
 * starts by inserting the commit into `commit_chain`, whose UNIQUE `prev` and
 * rev trigger make D1 reject a commit built on a stale root; the rejection
 * rolls back the whole batch, so a losing writer leaves nothing behind.
 */
import { and, asc, gt, inArray, isNull, lte, or, sql } from 'drizzle-orm'
import type { BatchItem } from 'drizzle-orm/batch'
import type { Db, SqlStatement } from './client'
import { blobBytes, d1ErrorText, hexBytes, placeholders, schema } from './client'
import { appendEventStatements } from './state'
import { liveSessionStatement } from './tokens'

const { block, commitChain, repoRoot, record, backlink } = schema

/** D1 allows 100 bound parameters per statement. */
export const MAX_PARAMS = 100

export const chunk = <T>(items: readonly T[], size: number): T[][] => {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

export interface RootRow {
  cid: string
  rev: string
}

export const selectRoot = (db: Db) =>
  db.orm.select({ cid: repoRoot.cid, rev: repoRoot.rev }).from(repoRoot).limit(1)

export const getRoot = async (db: Db): Promise<RootRow | null> => (await selectRoot(db))[0] ?? null

/** Fetches blocks by CID in one round trip (one statement per 100 CIDs, batched). */
export const getBlockBytes = async (db: Db, cids: string[]): Promise<Map<string, Uint8Array>> => {
  const found = new Map<string, Uint8Array>()
  if (cids.length === 0) return found
  const statements = chunk(cids, MAX_PARAMS).map((part) =>
    db.orm.select({ cid: block.cid, content: blobBytes(block.content) }).from(block).where(inArray(block.cid, part)),
  )
  const results = (await db.batch(statements)) as { cid: string; content: Uint8Array }[][]
  for (const rows of results) for (const row of rows) found.set(row.cid, row.content)
  return found
}

/**
 * One page of the blocks that belong to the snapshot at `rev`: added at or
 * before it and not removed by then. Ordered by CID for keyset paging.
 */
export const pageSnapshotBlocks = (
  db: Db,
  opts: { rev: string; since?: string; afterCid: string; limit: number },
): Promise<{ cid: string; content: Uint8Array }[]> =>
  db.orm
    .select({ cid: block.cid, content: blobBytes(block.content) })
    .from(block)
    .where(
      and(
        gt(block.cid, opts.afterCid),
        lte(block.rev, opts.rev),
        opts.since ? gt(block.rev, opts.since) : undefined,
        or(isNull(block.removedRev), gt(block.removedRev, opts.rev)),
      ),
    )
    .orderBy(asc(block.cid))
    .limit(opts.limit)

export interface CommitWrite {
  did: string
  cid: string
  rev: string
  /** CID of the parent commit; null for the genesis commit. */
  prev: string | null
  now: string
  newBlocks: { cid: string; bytes: Uint8Array }[]
  removedCids: string[]
  recordPuts: { uri: string; collection: string; rkey: string; cid: string }[]
  recordDeletes: string[]
  /** Records that existed before this commit and are updated or deleted by it: their old backlinks go. */
  replacedUris: string[]
  backlinks: { uri: string; path: string; linkTo: string }[]
  /** The firehose events for this commit (the #commit last), stored in the same batch. */
  events: { type: string; bytes: Uint8Array }[]
  /** Extra statements that must commit with it (e.g. pds_state updates). */
  extra?: BatchItem<'sqlite'>[]
  /**
   * What the plan took as true without reading it (src/repo/plan-writes.ts,
   * a write planned on the head this isolate remembers): checked by the
   * commit's first statement, which refuses the whole batch when any of it
   * no longer holds (`isCommitGuardError`).
   */
  assumes?: CommitAssumptions
}

/** Records of a collection (by URI prefix) that link to `linkTo` at `path`. */
export interface BacklinkQuery {
  uriPrefix: string
  path: string
  linkTo: string
}

/**
 * The URIs of the records `q` asks for: the write's read (src/db/write-reads.ts)
 * and its guard ask alike. A range, not LIKE: DIDs may contain '%' (did:web
 * ports are %3A).
 */
export const backlinkUrisStatement = (q: BacklinkQuery): Required<SqlStatement> => ({
  sql: 'SELECT uri FROM backlink WHERE path = ? AND link_to = ? AND uri >= ? AND uri < ?',
  params: [q.path, q.linkTo, q.uriPrefix, `${q.uriPrefix}\uffff`],
})

export interface CommitAssumptions {
  /** The password session the write is made under still has a refresh token. */
  liveSession: string | null
  /** Each referenced blob is held, with this MIME type and size. */
  blobs: { cid: string; mimeType: string; size: number }[]
  /** No record matches any of these (a new follow/like... replaces nothing). */
  noBacklinks: BacklinkQuery[]
}

/**
 * The condition under which the assumptions hold, as SQL with its
 * parameters. Always assumed too, as the first read would have checked: the
 * parent is the root (UNIQUE `prev` alone would let a commit follow one that
 * is not in the chain at all, e.g. after the database was reset), and the
 * account is active (src/account-status.ts).
 */
const assumptionsHold = (a: CommitAssumptions, prev: string): Required<SqlStatement> => {
  const conditions: string[] = []
  const params: NonNullable<SqlStatement['params']> = []
  const add = (test: 'EXISTS' | 'NOT EXISTS', query: SqlStatement): void => {
    conditions.push(`${test} (${query.sql})`)
    params.push(...(query.params ?? []))
  }
  add('EXISTS', { sql: 'SELECT 1 FROM repo_root WHERE cid = ?', params: [prev] })
  add('NOT EXISTS', { sql: "SELECT 1 FROM account WHERE status <> 'active'" })
  if (a.liveSession !== null) add('EXISTS', liveSessionStatement(a.liveSession))
  for (const b of a.blobs) add('EXISTS', { sql: 'SELECT 1 FROM blob WHERE cid = ? AND mime_type = ? AND size = ?', params: [b.cid, b.mimeType, b.size] })
  for (const q of a.noBacklinks) add('NOT EXISTS', backlinkUrisStatement(q))
  return { sql: conditions.join(' AND '), params }
}

/** The commit's own parameters in its first statement (cid, rev, prev, committed_at). */
const CHAIN_PARAMS = 4

/** Whether `a` fits the commit's first statement (D1 takes 100 parameters per statement); a write that assumes more reads first instead. */
export const canAssume = (a: CommitAssumptions): boolean => CHAIN_PARAMS + assumptionsHold(a, '').params.length <= MAX_PARAMS

/** `(?, ?, ...)` groups for a multi-row VALUES list. */
const rowsOf = (rows: number, row: string): string => Array.from({ length: rows }, () => row).join(', ')

/**
 * Statements for one commit, and the index of each event's log row insert
 * among them; `writeCommit` runs them atomically. Plain SQL: they run on
 * every write, and building them with drizzle cost more of a write's CPU than
 * anything else in its batch.
 */
export const commitStatements = (w: CommitWrite): { statements: (SqlStatement | BatchItem<'sqlite'>)[]; eventAt: number[] } => {
  const s: (SqlStatement | BatchItem<'sqlite'>)[] = []
  // First: claim the parent. Fails (and aborts the batch) for a stale writer, and, for a write that
  // assumed what it did not read, when an assumption fails: committed_at is then NULL, which NOT NULL refuses.
  const hold = w.assumes && assumptionsHold(w.assumes, w.prev ?? '')
  s.push({
    sql: `INSERT INTO commit_chain (cid, rev, prev, committed_at) VALUES (?, ?, ?, ${hold ? `(SELECT ? WHERE ${hold.sql})` : '?'})`,
    params: [w.cid, w.rev, w.prev ?? '', w.now, ...(hold ? hold.params : [])],
  })

  // 4 params per row; the bytes cross as hex (see hexBytes).
  for (const part of chunk(w.newBlocks, Math.floor(MAX_PARAMS / 4))) {
    s.push({
      sql:
        `INSERT INTO block (cid, rev, size, content) VALUES ${rowsOf(part.length, '(?, ?, ?, unhex(?))')} ` +
        // A block that comes back after being removed belongs to this rev again.
        'ON CONFLICT (cid) DO UPDATE SET rev = CASE WHEN block.removed_rev IS NULL THEN block.rev ELSE excluded.rev END, removed_rev = NULL, removed_at = NULL',
      params: part.flatMap((b) => [b.cid, w.rev, b.bytes.byteLength, hexBytes(b.bytes)]),
    })
  }

  for (const part of chunk(w.recordDeletes, MAX_PARAMS)) s.push({ sql: `DELETE FROM record WHERE uri IN (${placeholders(part.length)})`, params: part })
  // A record that existed before loses its old backlinks (a new one has none yet).
  for (const part of chunk(w.replacedUris, MAX_PARAMS)) s.push({ sql: `DELETE FROM backlink WHERE uri IN (${placeholders(part.length)})`, params: part })
  // 6 params per row.
  for (const part of chunk(w.recordPuts, Math.floor(MAX_PARAMS / 6))) {
    s.push({
      sql:
        `INSERT INTO record (uri, collection, rkey, cid, rev, indexed_at) VALUES ${rowsOf(part.length, '(?, ?, ?, ?, ?, ?)')} ` +
        'ON CONFLICT (uri) DO UPDATE SET cid = excluded.cid, rev = excluded.rev, indexed_at = excluded.indexed_at',
      params: part.flatMap((r) => [r.uri, r.collection, r.rkey, r.cid, w.rev, w.now]),
    })
  }
  for (const part of chunk(w.backlinks, Math.floor(MAX_PARAMS / 3))) {
    s.push({
      sql: `INSERT INTO backlink (uri, path, link_to) VALUES ${rowsOf(part.length, '(?, ?, ?)')} ON CONFLICT DO NOTHING`,
      params: part.flatMap((b) => [b.uri, b.path, b.linkTo]),
    })
  }

  // Mark blocks that left the repo; a record CID still used by another record stays.
  for (const part of chunk(w.removedCids, MAX_PARAMS - 2)) {
    s.push({
      sql:
        `UPDATE block SET removed_rev = ?, removed_at = ? WHERE cid IN (${placeholders(part.length)}) ` +
        'AND removed_rev IS NULL AND NOT EXISTS (SELECT 1 FROM record WHERE record.cid = block.cid)',
      params: [w.rev, w.now, ...part],
    })
  }

  s.push({
    sql: 'INSERT INTO repo_root (did, cid, rev, indexed_at) VALUES (?, ?, ?, ?) ON CONFLICT (did) DO UPDATE SET cid = excluded.cid, rev = excluded.rev, indexed_at = excluded.indexed_at',
    params: [w.did, w.cid, w.rev, w.now],
  })
  const eventAt: number[] = []
  for (const event of w.events) {
    eventAt.push(s.length)
    s.push(...appendEventStatements(event.type, event.bytes, w.now))
  }
  s.push(...(w.extra ?? []))
  return { statements: s, eventAt }
}

/** D1 reports a constraint/trigger failure as an error whose message says so. */
export const isStaleCommitError = (err: unknown): boolean =>
  /UNIQUE constraint failed: commit_chain|stale commit/i.test(d1ErrorText(err))

/** The commit's first statement refused it: something its plan assumed (or an import's staging) is gone. */
export const isCommitGuardError = (err: unknown): boolean => /NOT NULL constraint failed: commit_chain\.committed_at/i.test(d1ErrorText(err))

/**
 * Writes one commit atomically and returns the seq each of its events got in
 * the log, so the firehose can deliver them without reading them back (null
 * if D1 did not report them: the firehose then reads the log). Throws (and
 * writes nothing) if the root moved.
 */
export const writeCommit = async (db: Db, w: CommitWrite): Promise<number[] | null> => {
  const { statements, eventAt } = commitStatements(w)
  const results = await db.batchSqlResults(statements)
  // `seq` is the table's INTEGER PRIMARY KEY: the rowid D1 reports for the insert.
  const seqs = eventAt.map((at) => (results[at] as { meta?: { last_row_id?: unknown } } | undefined)?.meta?.last_row_id)
  return seqs.every((seq): seq is number => Number.isSafeInteger(seq) && (seq as number) > 0) ? seqs : null
}

/** When the repo was created (its genesis commit), or null before that. */
export const getRepoCreatedAt = async (db: Db): Promise<string | null> => {
  const [row] = await db.orm
    .select({ at: commitChain.committedAt })
    .from(commitChain)
    .where(sql`${commitChain.prev} = ''`)
    .limit(1)
  return row?.at ?? null
}
