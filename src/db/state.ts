/**
 * `pds_state`: a few named facts kept across deploys (for instance the handle
 * last announced on the firehose), read and written as plain strings.
 */
import { eq, inArray, sql } from 'drizzle-orm'
import type { BatchItem } from 'drizzle-orm/batch'
import type { Db } from './client'
import { hexBytes, schema, type SqlStatement } from './client'

const { pdsState, repoSeq, repoSeqChunk } = schema

export const getState = async (db: Db, key: string): Promise<string | null> => {
  const [row] = await db.orm.select({ value: pdsState.value }).from(pdsState).where(eq(pdsState.key, key)).limit(1)
  return row?.value ?? null
}

/** Several values in one read; missing keys are absent from the map. */
export const getStates = async (db: Db, keys: string[]): Promise<Map<string, string>> => {
  const rows = await db.orm.select({ key: pdsState.key, value: pdsState.value }).from(pdsState).where(inArray(pdsState.key, keys))
  return new Map(rows.map((r) => [r.key, r.value]))
}

export const deleteStateStatement = (db: Db, key: string): BatchItem<'sqlite'> => db.orm.delete(pdsState).where(eq(pdsState.key, key))

export const setStateStatement = (db: Db, key: string, value: string, now: string): BatchItem<'sqlite'> =>
  db.orm
    .insert(pdsState)
    .values({ key, value, updatedAt: now })
    .onConflictDoUpdate({ target: pdsState.key, set: { value, updatedAt: now } })

/** Event bodies above this are split over `repo_seq_chunk` rows to stay inside D1's row size. */
export const EVENT_CHUNK_BYTES = 512 * 1024

/** Statements appending one event to the firehose log (for a batch); the body crosses as hex (see hexBytes). */
export const appendEventStatements = (type: string, bytes: Uint8Array, now: string): SqlStatement[] => {
  if (bytes.byteLength <= EVENT_CHUNK_BYTES) {
    return [{ sql: 'INSERT INTO repo_seq (event_type, event, sequenced_at) VALUES (?, unhex(?), ?)', params: [type, hexBytes(bytes), now] }]
  }
  const count = Math.ceil(bytes.byteLength / EVENT_CHUNK_BYTES)
  const statements: SqlStatement[] = [{ sql: "INSERT INTO repo_seq (event_type, event, sequenced_at, chunks) VALUES (?, X'', ?, ?)", params: [type, now, count] }]
  for (let idx = 0; idx < count; idx++) {
    const data = bytes.subarray(idx * EVENT_CHUNK_BYTES, (idx + 1) * EVENT_CHUNK_BYTES)
    // Inside the batch's transaction the newest seq is the event just inserted.
    statements.push({ sql: 'INSERT INTO repo_seq_chunk (seq, idx, data) SELECT max(seq), ?, unhex(?) FROM repo_seq', params: [idx, hexBytes(data)] })
  }
  return statements
}
