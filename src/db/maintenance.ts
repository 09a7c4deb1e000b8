/**
 * Bounded clean-up queries the cron needs beyond the per-area ones (blocks,
 * events and blobs have theirs in repo.ts, seq.ts and blobs.ts).
 */
import { inArray, lte } from 'drizzle-orm'
import type { Db } from './client'
import { schema } from './client'

const { refreshToken } = schema

/**
 * Deletes at most `limit` refresh tokens that expired at or before `now` and
 * returns how many went. A token in its rotation grace period has a future
 * `expiresAt`, so it is never touched.
 */
export const deleteExpiredRefreshTokensBounded = async (db: Db, now: string, limit: number): Promise<number> => {
  const victims = db.orm.select({ id: refreshToken.id }).from(refreshToken).where(lte(refreshToken.expiresAt, now)).limit(limit)
  const deleted = await db.orm
    .delete(refreshToken)
    .where(inArray(refreshToken.id, victims))
    .returning({ id: refreshToken.id })
  return deleted.length
}
