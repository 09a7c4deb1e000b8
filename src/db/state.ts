/**
 * `pds_state`: a few named facts kept across deploys (for instance the handle
 * last announced on the firehose), read and written as plain strings.
 */
import { eq } from 'drizzle-orm'
import type { BatchItem } from 'drizzle-orm/batch'
import type { Db } from './client'
import { schema } from './client'

const { pdsState, repoSeq } = schema

export const getState = async (db: Db, key: string): Promise<string | null> => {
  const [row] = await db.orm.select({ value: pdsState.value }).from(pdsState).where(eq(pdsState.key, key)).limit(1)
  return row?.value ?? null
}

export const setStateStatement = (db: Db, key: string, value: string, now: string): BatchItem<'sqlite'> =>
  db.orm
    .insert(pdsState)
    .values({ key, value, updatedAt: now })
    .onConflictDoUpdate({ target: pdsState.key, set: { value, updatedAt: now } })

export const appendEventStatement = (db: Db, type: string, bytes: Uint8Array, now: string): BatchItem<'sqlite'> =>
  db.orm.insert(repoSeq).values({ eventType: type, event: bytes, sequencedAt: now })
