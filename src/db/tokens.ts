/**
 * Refresh-token state. D1 is strongly consistent, so a rotated or revoked
 * token is refused on the very next request from anywhere.
 */
import { and, desc, eq, gt, isNull, lte, or, sql } from 'drizzle-orm'
import type { Db, SqlStatement } from './client'
import { schema } from './client'

const { refreshToken } = schema

export interface RefreshTokenRow {
  id: string
  did: string
  expiresAt: string
  nextId: string | null
  appPasswordName: string | null
  /** Null only for tokens stored before sessions had ids (migration 0010 fills them in). */
  sessionId: string | null
}

export const insertRefreshToken = async (db: Db, row: Omit<RefreshTokenRow, 'nextId'>): Promise<void> => {
  // Re-granting the same next id during the grace period is not an error.
  await db.orm.insert(refreshToken).values({ ...row, nextId: null }).onConflictDoNothing()
}

export const getRefreshToken = async (db: Db, id: string): Promise<RefreshTokenRow | null> => {
  const [row] = await db.orm.select().from(refreshToken).where(eq(refreshToken.id, id)).limit(1)
  return row ?? null
}

/**
 * Shortens the old token to its grace period, records its successor and stores
 * the successor, atomically. Returns false if another refresh picked a
 * different successor first (the caller then retries and gets that one).
 */
export const rotateRefreshToken = async (
  db: Db,
  opts: { id: string; graceExpiresAt: string; next: Omit<RefreshTokenRow, 'nextId'> },
): Promise<boolean> => {
  const [updated] = (await db.batch([
    db.orm
      .update(refreshToken)
      .set({ expiresAt: opts.graceExpiresAt, nextId: opts.next.id })
      .where(and(eq(refreshToken.id, opts.id), or(isNull(refreshToken.nextId), eq(refreshToken.nextId, opts.next.id))))
      .returning({ id: refreshToken.id }),
    // Stored only if the update above really named it as the successor.
    db.orm
      .insert(refreshToken)
      .select(
        sql`SELECT ${opts.next.id}, ${opts.next.did}, ${opts.next.expiresAt}, NULL, ${opts.next.appPasswordName}, ${opts.next.sessionId}
            WHERE EXISTS (SELECT 1 FROM ${refreshToken} WHERE id = ${opts.id} AND next_id = ${opts.next.id})`,
      )
      .onConflictDoNothing(),
  ])) as [{ id: string }[], unknown]
  return updated.length > 0
}

/** A session is live while any of its refresh tokens exists: one row if it is (a record write asks in its read batch, src/db/write-reads.ts, or its commit's guard, src/db/repo.ts). */
export const liveSessionStatement = (sessionId: string): SqlStatement => ({
  sql: 'SELECT 1 AS live FROM refresh_token WHERE session_id = ? LIMIT 1',
  params: [sessionId],
})

export const isLiveSession = async (db: Db, sessionId: string): Promise<boolean> => (await db.batchSql([liveSessionStatement(sessionId)]))[0].length > 0

export const deleteExpiredRefreshTokens = async (db: Db, now: string): Promise<void> => {
  await db.orm.delete(refreshToken).where(lte(refreshToken.expiresAt, now))
}

/** The current refresh token of every live password session (rotated-away ones in their grace period excluded). */
export const listLiveRefreshTokens = async (db: Db, now: string): Promise<RefreshTokenRow[]> =>
  db.orm
    .select()
    .from(refreshToken)
    .where(and(isNull(refreshToken.nextId), gt(refreshToken.expiresAt, now)))
    .orderBy(desc(refreshToken.expiresAt))

/**
 * Ends the password session `id` belongs to: every refresh token of the
 * session, including rotated-away ones still in their grace period (which
 * could otherwise bring it back), and with them its access tokens, which are
 * refused once no token of their session is left. The chain walk covers
 * tokens rotated before sessions had ids.
 */
export const deleteSessionOf = async (db: Db, id: string): Promise<void> => {
  await db.orm.run(sql`
    WITH RECURSIVE chain(id) AS (
      SELECT ${id}
      UNION SELECT ${refreshToken.id} FROM ${refreshToken} JOIN chain ON ${refreshToken.nextId} = chain.id
    )
    DELETE FROM ${refreshToken}
    WHERE ${refreshToken.id} IN (SELECT id FROM chain)
       OR ${refreshToken.sessionId} = (SELECT ${refreshToken.sessionId} FROM ${refreshToken} WHERE ${refreshToken.id} = ${id})`)
}
