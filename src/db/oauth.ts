/**
 * OAuth state in D1: pushed requests and their codes, sessions (with the
 * hashes of their current tokens), rotated refresh tokens, and one-time values
 * (DPoP `jti`s, client-assertion `jti`s, code challenges). Every transition
 * that must happen once (approving a request, redeeming a code, rotating a
 * refresh token) is a single conditional statement or batch, so two isolates
 * racing cannot both win. Grants and signed-in browsers: oauth-account.ts.
 */
import { and, eq, gt, inArray, isNull, lte, or, sql } from 'drizzle-orm'
import type { Db } from './client'
import { schema } from './client'

const { oauthRequest, oauthSession, oauthUsedRefresh, oauthReplay } = schema

export type OAuthRequestRow = typeof oauthRequest.$inferSelect
export type OAuthSessionRow = typeof oauthSession.$inferSelect

/**
 * The statement that records `key` as used until `expiresAt`, returning a row
 * only if it was not already in use at `now` (an expired record is taken
 * over). A statement, so the resource server can batch it with its token read.
 */
export const claimOnceStatement = (db: Db, key: string, expiresAt: string, now: string) =>
  db.orm
    .insert(oauthReplay)
    .values({ key, expiresAt })
    .onConflictDoUpdate({ target: oauthReplay.key, set: { expiresAt }, setWhere: lte(oauthReplay.expiresAt, now) })
    .returning({ key: oauthReplay.key })

/** True the first time `key` is claimed (until it expires); false on a replay. */
export const claimOnce = async (db: Db, key: string, expiresAt: string, now: string): Promise<boolean> =>
  (await claimOnceStatement(db, key, expiresAt, now)).length > 0

/** True when `key` is currently claimed. */
export const isClaimed = async (db: Db, key: string, now: string): Promise<boolean> =>
  (await db.orm.select({ key: oauthReplay.key }).from(oauthReplay).where(and(eq(oauthReplay.key, key), gt(oauthReplay.expiresAt, now))).limit(1)).length > 0

// --- authorization requests -------------------------------------------------

export const insertRequest = async (db: Db, row: Omit<OAuthRequestRow, 'deviceId' | 'codeHash' | 'authorizedAt'>): Promise<void> => {
  await db.orm.insert(oauthRequest).values(row)
}

export const getRequest = async (db: Db, id: string): Promise<OAuthRequestRow | null> =>
  (await db.orm.select().from(oauthRequest).where(eq(oauthRequest.id, id)).limit(1))[0] ?? null

/**
 * Ties a request to the browser that first signs in to it and gives the owner
 * `expiresAt` to finish. False if another browser has it, it was approved
 * already, or it expired.
 */
export const bindRequestToDevice = async (db: Db, id: string, deviceId: string, expiresAt: string, now: string): Promise<boolean> => {
  const updated = await db.orm
    .update(oauthRequest)
    .set({ deviceId, expiresAt })
    .where(
      and(
        eq(oauthRequest.id, id),
        or(isNull(oauthRequest.deviceId), eq(oauthRequest.deviceId, deviceId)),
        isNull(oauthRequest.codeHash),
        gt(oauthRequest.expiresAt, now),
      ),
    )
    .returning({ id: oauthRequest.id })
  return updated.length > 0
}

/**
 * Approves a request from a signed-in browser: stores the hash of its code,
 * once. Null unless the request is live, not yet approved, and not tied to
 * another browser.
 */
export const approveRequest = async (
  db: Db,
  opts: { id: string; deviceId: string; codeHash: string; now: string; codeExpiresAt: string },
): Promise<OAuthRequestRow | null> => {
  const [row] = await db.orm
    .update(oauthRequest)
    .set({ deviceId: opts.deviceId, codeHash: opts.codeHash, authorizedAt: opts.now, expiresAt: opts.codeExpiresAt })
    .where(
      and(
        eq(oauthRequest.id, opts.id),
        or(isNull(oauthRequest.deviceId), eq(oauthRequest.deviceId, opts.deviceId)),
        isNull(oauthRequest.codeHash),
        gt(oauthRequest.expiresAt, opts.now),
      ),
    )
    .returning()
  return row ?? null
}

/** Deletes a request that was not approved (denied); false if it was approved or is gone. */
export const deletePendingRequest = async (db: Db, id: string, deviceId: string): Promise<OAuthRequestRow | null> =>
  (
    await db.orm
      .delete(oauthRequest)
      .where(and(eq(oauthRequest.id, id), isNull(oauthRequest.codeHash), or(isNull(oauthRequest.deviceId), eq(oauthRequest.deviceId, deviceId))))
      .returning()
  )[0] ?? null

/** Redeems a code: deletes and returns its request, so a code works once whoever races. */
export const consumeCode = async (db: Db, codeHash: string): Promise<OAuthRequestRow | null> =>
  (await db.orm.delete(oauthRequest).where(eq(oauthRequest.codeHash, codeHash)).returning())[0] ?? null

// --- sessions -----------------------------------------------------------------

export const insertSession = async (db: Db, row: OAuthSessionRow): Promise<void> => {
  await db.orm.insert(oauthSession).values(row)
}

/** The statement reading the session of an access token (batched with the proof's one-time claim). */
export const sessionByAccessStatement = (db: Db, accessHash: string) =>
  db.orm.select().from(oauthSession).where(eq(oauthSession.accessHash, accessHash)).limit(1)

export const getSessionByAccess = async (db: Db, accessHash: string): Promise<OAuthSessionRow | null> =>
  (await sessionByAccessStatement(db, accessHash))[0] ?? null

export const getSessionByRefresh = async (db: Db, refreshHash: string): Promise<OAuthSessionRow | null> =>
  (await db.orm.select().from(oauthSession).where(eq(oauthSession.refreshHash, refreshHash)).limit(1))[0] ?? null

/** The session a rotated-away refresh token belonged to, if that token was ever used. */
export const sessionOfUsedRefresh = async (db: Db, refreshHash: string): Promise<string | null> =>
  (await db.orm.select({ sessionId: oauthUsedRefresh.sessionId }).from(oauthUsedRefresh).where(eq(oauthUsedRefresh.hash, refreshHash)).limit(1))[0]
    ?.sessionId ?? null

export const sessionIdByCode = async (db: Db, codeHash: string): Promise<string | null> =>
  (await db.orm.select({ id: oauthSession.id }).from(oauthSession).where(eq(oauthSession.codeHash, codeHash)).limit(1))[0]?.id ?? null

/**
 * Rotates a session's tokens if `oldRefreshHash` is still its current refresh
 * token, and remembers the old one as used (a later replay ends the session).
 * False when a concurrent refresh already rotated it.
 */
export const rotateSessionTokens = async (
  db: Db,
  opts: {
    id: string
    oldRefreshHash: string
    set: Pick<OAuthSessionRow, 'accessHash' | 'accessExpiresAt' | 'refreshHash' | 'refreshedAt' | 'expiresAt' | 'scope' | 'clientAuth'>
  },
): Promise<boolean> => {
  const [updated] = (await db.batch([
    db.orm
      .update(oauthSession)
      .set(opts.set)
      .where(and(eq(oauthSession.id, opts.id), eq(oauthSession.refreshHash, opts.oldRefreshHash)))
      .returning({ id: oauthSession.id }),
    // Kept as long as the session could have lived: a replay is recognised until then.
    db.orm.insert(oauthUsedRefresh).values({ hash: opts.oldRefreshHash, sessionId: opts.id, expiresAt: opts.set.expiresAt }).onConflictDoNothing(),
  ])) as [{ id: string }[], unknown]
  return updated.length > 0
}

/** Ends sessions and forgets their used refresh tokens, atomically. */
export const deleteSessions = async (db: Db, ids: string[]): Promise<void> => {
  if (ids.length === 0) return
  await db.batch([db.orm.delete(oauthSession).where(inArray(oauthSession.id, ids)), db.orm.delete(oauthUsedRefresh).where(inArray(oauthUsedRefresh.sessionId, ids))])
}

/** Every live session, newest activity first (the account page). */
export const listSessions = async (db: Db, now: string): Promise<OAuthSessionRow[]> =>
  db.orm.select().from(oauthSession).where(gt(oauthSession.expiresAt, now)).orderBy(sql`${oauthSession.refreshedAt} DESC`)

/** Ids of the sessions of one client. */
export const sessionIdsOfClient = async (db: Db, clientId: string): Promise<string[]> =>
  (await db.orm.select({ id: oauthSession.id }).from(oauthSession).where(eq(oauthSession.clientId, clientId))).map((r) => r.id)
