/**
 * The firehose log (`repo_seq`). Events are appended in the same batch as the
 * commit they describe (src/db/repo.ts); here they are read back in order,
 * bounded, for delivery and replay, and pruned after the retention window.
 */
import { and, asc, gt, inArray, lt, max, min, sql } from 'drizzle-orm'
import type { Db } from './client'
import { concatBytes } from '@atproto/repo'
import { blobBytes, schema } from './client'
import { chunk, MAX_PARAMS } from './repo'

const { repoSeq, repoSeqChunk } = schema

export interface SeqEventRow {
  seq: number
  eventType: string
  event: Uint8Array
  sequencedAt: string
  chunks: number
}

/** Events after `seq`, oldest first, with chunked bodies put back together. */
export const readEventsAfter = async (db: Db, seq: number, limit: number): Promise<SeqEventRow[]> => {
  const rows = await db.orm
    .select({
      seq: repoSeq.seq,
      eventType: repoSeq.eventType,
      event: blobBytes(repoSeq.event),
      sequencedAt: repoSeq.sequencedAt,
      chunks: repoSeq.chunks,
    })
    .from(repoSeq)
    .where(gt(repoSeq.seq, seq))
    .orderBy(asc(repoSeq.seq))
    .limit(limit)
  const chunked = rows.filter((r) => r.chunks > 0)
  if (chunked.length === 0) return rows
  // One statement per 100 seqs (D1's bound-parameter limit), all in one round trip.
  const pieces = (
    (await db.batch(
      chunk(
        chunked.map((r) => r.seq),
        MAX_PARAMS,
      ).map((seqs) =>
        db.orm
          .select({ seq: repoSeqChunk.seq, data: blobBytes(repoSeqChunk.data) })
          .from(repoSeqChunk)
          .where(inArray(repoSeqChunk.seq, seqs))
          .orderBy(asc(repoSeqChunk.seq), asc(repoSeqChunk.idx)),
      ),
    )) as { seq: number; data: Uint8Array }[][]
  ).flat()
  return rows.map((row) => {
    if (row.chunks === 0) return row
    const event = concatBytes(pieces.filter((p) => p.seq === row.seq).map((p) => p.data))
    return { ...row, event }
  })
}

/** A page of the log: the events read, and whether they reach the end of the log as of the read. */
export interface EventPage {
  rows: SeqEventRow[]
  /** True when nothing after the last row existed at the time of the read. */
  complete: boolean
}

/**
 * Events after `seq`, at most `limit` of them and, past the first, at most
 * `maxBytes` of bodies: a page of big commits (up to ~2 MB each) stays small
 * in memory whatever the log holds. Sizes are read first (no bodies), then
 * only the rows that fit.
 */
export const readEventPageAfter = async (db: Db, seq: number, limit: number, maxBytes: number): Promise<EventPage> => {
  const sizes = await db.orm
    .select({
      seq: repoSeq.seq,
      // Spelled out: drizzle writes columns unqualified in a one-table select, which inside the
      // subquery would compare repo_seq_chunk.seq with itself.
      bytes: sql<number>`length(${repoSeq.event}) + coalesce((SELECT sum(length(c.data)) FROM repo_seq_chunk c WHERE c.seq = repo_seq.seq), 0)`.mapWith(Number),
    })
    .from(repoSeq)
    .where(gt(repoSeq.seq, seq))
    .orderBy(asc(repoSeq.seq))
    .limit(limit)
  let count = 0
  let total = 0
  while (count < sizes.length && (count === 0 || total + sizes[count].bytes <= maxBytes)) total += sizes[count++].bytes
  if (count === 0) return { rows: [], complete: true }
  const rows = await readEventsAfter(db, seq, count)
  return { rows, complete: count === sizes.length && sizes.length < limit }
}

/** The first and last seq in the log (null when empty). */
export const getSeqBounds = async (db: Db): Promise<{ first: number | null; last: number | null }> => {
  const [row] = await db.orm.select({ first: min(repoSeq.seq), last: max(repoSeq.seq) }).from(repoSeq)
  return { first: row?.first ?? null, last: row?.last ?? null }
}

/** The first seq sequenced at or after `time` (the start of the retained window). */
export const firstSeqSince = async (db: Db, time: string): Promise<number | null> => {
  const [row] = await db.orm.select({ first: min(repoSeq.seq) }).from(repoSeq).where(sql`${repoSeq.sequencedAt} >= ${time}`)
  return row?.first ?? null
}

/** Deletes events older than `before`, keeping the newest so the seq counter and cursors stay meaningful. */
export const pruneEventsBefore = async (db: Db, before: string, limit: number): Promise<number> => {
  const { last } = await getSeqBounds(db)
  if (last === null) return 0
  const victims = await db.orm
    .select({ seq: repoSeq.seq })
    .from(repoSeq)
    .where(and(lt(repoSeq.sequencedAt, before), lt(repoSeq.seq, last)))
    .orderBy(asc(repoSeq.seq))
    .limit(limit)
  if (victims.length === 0) return 0
  const upTo = victims[victims.length - 1].seq
  await db.batch([
    db.orm.delete(repoSeqChunk).where(sql`${repoSeqChunk.seq} <= ${upTo}`),
    db.orm.delete(repoSeq).where(sql`${repoSeq.seq} <= ${upTo}`),
  ])
  return victims.length
}
