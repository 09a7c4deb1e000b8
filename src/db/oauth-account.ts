/**
 * The owner-facing side of OAuth state: apps the owner approved (grants) and
 * browsers signed in to the authorization and account pages (devices), plus
 * the cron's bounded clean-up of every expired OAuth row.
 */
import { and, desc, eq, gt, inArray, lte } from 'drizzle-orm'
import type { SQLiteColumn, SQLiteTable } from 'drizzle-orm/sqlite-core'
import type { Db } from './client'
import { schema } from './client'

const { oauthGrant, oauthDevice, oauthSession, oauthUsedRefresh, oauthRequest, oauthReplay } = schema

export type OAuthGrantRow = typeof oauthGrant.$inferSelect
export type OAuthDeviceRow = typeof oauthDevice.$inferSelect

/** Records an approval; the app's scopes grow to include what it was just granted. */
export const upsertGrant = async (db: Db, row: Omit<OAuthGrantRow, 'createdAt' | 'updatedAt'>, now: string): Promise<void> => {
  const existing = (await db.orm.select({ scope: oauthGrant.scope }).from(oauthGrant).where(eq(oauthGrant.clientId, row.clientId)).limit(1))[0]
  const scope = [...new Set([...(existing?.scope.split(' ') ?? []), ...row.scope.split(' ')])].filter(Boolean).join(' ')
  await db.orm
    .insert(oauthGrant)
    .values({ ...row, scope, createdAt: now, updatedAt: now })
    .onConflictDoUpdate({ target: oauthGrant.clientId, set: { clientName: row.clientName, clientUri: row.clientUri, scope, updatedAt: now } })
}

export const listGrants = async (db: Db): Promise<OAuthGrantRow[]> => db.orm.select().from(oauthGrant).orderBy(desc(oauthGrant.updatedAt))

/** Revokes an app: its grant and every session it holds, in one batch (refused from the next request on). */
export const revokeClient = async (db: Db, clientId: string): Promise<void> => {
  const sessions = db.orm.select({ id: oauthSession.id }).from(oauthSession).where(eq(oauthSession.clientId, clientId))
  await db.batch([
    db.orm.delete(oauthUsedRefresh).where(inArray(oauthUsedRefresh.sessionId, sessions)),
    db.orm.delete(oauthSession).where(eq(oauthSession.clientId, clientId)),
    db.orm.delete(oauthRequest).where(eq(oauthRequest.clientId, clientId)),
    db.orm.delete(oauthGrant).where(eq(oauthGrant.clientId, clientId)),
  ])
}

export const insertDevice = async (db: Db, row: OAuthDeviceRow): Promise<void> => {
  await db.orm.insert(oauthDevice).values(row)
}

export const getDevice = async (db: Db, id: string, now: string): Promise<OAuthDeviceRow | null> =>
  (await db.orm.select().from(oauthDevice).where(and(eq(oauthDevice.id, id), gt(oauthDevice.expiresAt, now))).limit(1))[0] ?? null

export const listDevices = async (db: Db, now: string): Promise<OAuthDeviceRow[]> =>
  db.orm.select().from(oauthDevice).where(gt(oauthDevice.expiresAt, now)).orderBy(desc(oauthDevice.createdAt))

export const deleteDevice = async (db: Db, id: string): Promise<void> => {
  await db.orm.delete(oauthDevice).where(eq(oauthDevice.id, id))
}

/**
 * Deletes at most `limit` expired rows of each OAuth table (one batch, one
 * round trip); returns how many went. Each DELETE re-checks the expiry.
 */
export const deleteExpiredOAuthState = async (db: Db, now: string, limit: number): Promise<number> => {
  const due = (table: SQLiteTable, key: SQLiteColumn, expiresAt: SQLiteColumn) =>
    db.orm
      .delete(table)
      .where(and(inArray(key, db.orm.select({ k: key }).from(table).where(lte(expiresAt, now)).limit(limit)), lte(expiresAt, now)))
      .returning({ k: key })
  const results = (await db.batch([
    due(oauthReplay, oauthReplay.key, oauthReplay.expiresAt),
    due(oauthRequest, oauthRequest.id, oauthRequest.expiresAt),
    due(oauthUsedRefresh, oauthUsedRefresh.hash, oauthUsedRefresh.expiresAt),
    due(oauthDevice, oauthDevice.id, oauthDevice.expiresAt),
    due(oauthSession, oauthSession.id, oauthSession.expiresAt),
  ])) as unknown[][]
  return results.reduce((n, rows) => n + rows.length, 0)
}
