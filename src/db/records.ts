/**
 * Record index queries. Values are the record blocks themselves, joined from
 * `block`, so the index never holds a second copy that could drift.
 */
import { and, asc, desc, eq, gt, lt } from 'drizzle-orm'
import type { Db } from './client'
import { blobBytes, schema } from './client'

const { block, record } = schema

export interface RecordRow {
  uri: string
  cid: string
  content: Uint8Array
}

export const getRecordRow = async (db: Db, uri: string): Promise<RecordRow | null> => {
  const [row] = await db.orm
    .select({ uri: record.uri, cid: record.cid, content: blobBytes(block.content) })
    .from(record)
    .innerJoin(block, eq(block.cid, record.cid))
    .where(eq(record.uri, uri))
    .limit(1)
  return row ?? null
}

export const listRecordRows = (
  db: Db,
  opts: { collection: string; limit: number; reverse: boolean; cursor?: string },
): Promise<RecordRow[]> => {
  const { collection, limit, reverse, cursor } = opts
  // Newest first by default; `reverse` pages oldest first (as the reference PDS).
  const range = cursor === undefined ? [] : [reverse ? gt(record.rkey, cursor) : lt(record.rkey, cursor)]
  return db.orm
    .select({ uri: record.uri, cid: record.cid, content: blobBytes(block.content) })
    .from(record)
    .innerJoin(block, eq(block.cid, record.cid))
    .where(and(eq(record.collection, collection), ...range))
    .orderBy(reverse ? asc(record.rkey) : desc(record.rkey))
    .limit(limit)
}

export const listCollections = async (db: Db): Promise<string[]> => {
  const rows = await db.orm.selectDistinct({ collection: record.collection }).from(record).orderBy(asc(record.collection))
  return rows.map((r) => r.collection)
}
