/**
 * Queries for read-after-write (src/proxy/read-after-write): the records this
 * repo wrote after a given rev, i.e. the writes an AppView that reports that
 * rev in `atproto-repo-rev` has not indexed yet. Mirrors the reference PDS's
 * `RecordReader.getRecordsSinceRev`.
 *
 * Values are decoded from the record blocks into JSON-form lex values
 * (`$link`, `$bytes`, blob refs as JSON), as src/repo/reader.ts serves them,
 * because they are spliced into JSON responses as they are.
 */
import { decode } from '@atproto/lex-cbor'
import { lexToJson } from '@atproto/lex-json'
import { asc, eq, gt, lte } from 'drizzle-orm'
import type { Db } from './client'
import { blobBytes, schema } from './client'

const { block, record } = schema

export interface LocalRecord {
  uri: string
  cid: string
  rev: string
  /** When this PDS indexed the write (ISO 8601). */
  indexedAt: string
  /** The record, JSON-form. */
  value: unknown
}

export interface RecordsSinceRev {
  /** Records whose last write is newer than the rev, oldest first. */
  records: LocalRecord[]
  /**
   * Whether any record was written at or before the rev. When none was, the
   * rev cannot describe this repo (say an AppView clock from before an account
   * migration), and the reference ignores the newer records.
   */
  hasOlder: boolean
  /** The current value of `extraUri` (the profile, for post authors), or null. */
  extra: unknown | null
}

/**
 * One round trip: up to `limit` records written after `rev` (any collection,
 * as the reference), whether older ones exist, and the record at `extraUri`.
 *
 * `record.rev` has no index, so the first two scan the record table: callers
 * first check that the repo root is newer than `rev` at all, which is the rare
 * case (the AppView is usually caught up).
 */
export const listRecordsSinceRev = async (
  db: Db,
  opts: { rev: string; limit: number; extraUri: string },
): Promise<RecordsSinceRev> => {
  const columns = { uri: record.uri, cid: record.cid, rev: record.rev, indexedAt: record.indexedAt, content: blobBytes(block.content) }
  const [since, older, extra] = (await db.batch([
    db.orm
      .select(columns)
      .from(record)
      .innerJoin(block, eq(block.cid, record.cid))
      .where(gt(record.rev, opts.rev))
      // Several records share the rev of their commit; uri breaks the tie so the page is deterministic.
      .orderBy(asc(record.rev), asc(record.uri))
      .limit(opts.limit),
    db.orm.select({ uri: record.uri }).from(record).where(lte(record.rev, opts.rev)).limit(1),
    db.orm
      .select({ content: blobBytes(block.content) })
      .from(record)
      .innerJoin(block, eq(block.cid, record.cid))
      .where(eq(record.uri, opts.extraUri))
      .limit(1),
  ])) as [(Omit<LocalRecord, 'value'> & { content: Uint8Array })[], { uri: string }[], { content: Uint8Array }[]]
  return {
    records: since.map(({ content, ...row }) => ({ ...row, value: lexToJson(decode(content)) })),
    hasOlder: older.length > 0,
    extra: extra[0] ? lexToJson(decode(extra[0].content)) : null,
  }
}
