/**
 * Bounded clean-up queries of the cron that have no home in the per-area
 * files (events and blobs have theirs in seq.ts and blobs.ts). Each is one
 * DELETE whose subquery picks at most `limit` due rows and whose WHERE checks
 * them again, so it is atomic and never needs more than three parameters.
 */
import { and, inArray, lte } from 'drizzle-orm'
import type { Db } from './client'
import { schema } from './client'

const { block, refreshToken } = schema

/**
 * Deletes at most `limit` blocks removed from the repo at or before `before`.
 * A block a commit brought back meanwhile has its mark cleared, so the
 * re-check keeps it. One statement, not select-then-delete: nothing can
 * land in between, and no bound parameter per block (D1 allows 100).
 */
export const deleteDueRemovedBlocks = async (db: Db, before: string, limit: number): Promise<number> => {
  const victims = db.orm.select({ cid: block.cid }).from(block).where(lte(block.removedAt, before)).limit(limit)
  const deleted = await db.orm
    .delete(block)
    .where(and(inArray(block.cid, victims), lte(block.removedAt, before)))
    .returning({ cid: block.cid })
  return deleted.length
}

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
