/**
 * The owner's account-side state besides the repo: app passwords (with the
 * refresh tokens issued for them) and `app.bsky.*` preferences.
 */
import { and, asc, desc, eq, isNull, like, notInArray, or, sql } from 'drizzle-orm'
import type { Db } from './client'
import { schema } from './client'

const { appPassword, accountPref, refreshToken } = schema

export interface AppPasswordRow {
  name: string
  createdAt: string
  privileged: boolean
}

/** Inserts an app password; false when the name is taken. */
export const insertAppPassword = async (db: Db, row: AppPasswordRow & { passwordHash: string }): Promise<boolean> => {
  const inserted = await db.orm.insert(appPassword).values(row).onConflictDoNothing().returning({ name: appPassword.name })
  return inserted.length > 0
}

/** The public columns of app passwords (never the hash). */
const appPasswordRows = (db: Db) =>
  db.orm.select({ name: appPassword.name, createdAt: appPassword.createdAt, privileged: appPassword.privileged }).from(appPassword)

// Newest first, as the reference lists them.
export const listAppPasswords = (db: Db): Promise<AppPasswordRow[]> => appPasswordRows(db).orderBy(desc(appPassword.createdAt))

export const findAppPasswordByHash = async (db: Db, passwordHash: string): Promise<AppPasswordRow | null> =>
  (await appPasswordRows(db).where(eq(appPassword.passwordHash, passwordHash)).limit(1))[0] ?? null

export const findAppPassword = async (db: Db, name: string): Promise<AppPasswordRow | null> =>
  (await appPasswordRows(db).where(eq(appPassword.name, name)).limit(1))[0] ?? null

/** Deletes the app password and every refresh token issued for it, atomically. */
export const deleteAppPassword = async (db: Db, name: string): Promise<void> => {
  await db.batch([db.orm.delete(appPassword).where(eq(appPassword.name, name)), db.orm.delete(refreshToken).where(eq(refreshToken.appPasswordName, name))])
}

export interface StoredPref {
  name: string
  value: Record<string, unknown>
}

export const listPreferences = async (db: Db): Promise<StoredPref[]> => {
  const rows = await db.orm.select().from(accountPref).orderBy(asc(accountPref.id))
  return rows.map((row) => ({ name: row.name, value: JSON.parse(row.valueJson) }))
}

/**
 * Replaces every preference in `namespace` (except the names in `keep`) with
 * `values`, in one atomic batch: two concurrent puts cannot interleave.
 */
export const replacePreferences = async (db: Db, opts: { namespace: string; keep: string[] }, values: StoredPref[]): Promise<void> => {
  const inNamespace = or(eq(accountPref.name, opts.namespace), like(accountPref.name, `${opts.namespace}.%`))
  const remove = db.orm.delete(accountPref).where(opts.keep.length ? and(inNamespace, notInArray(accountPref.name, opts.keep)) : inNamespace)
  if (values.length === 0) {
    await remove
    return
  }
  const insert = db.orm.insert(accountPref).values(values.map((v) => ({ name: v.name, valueJson: JSON.stringify(v.value) })))
  await db.batch([remove, insert])
}

export interface AccountCounts {
  root: { cid: string; rev: string } | null
  records: number
  blocks: number
  prefs: number
  expectedBlobs: number
  importedBlobs: number
}

/** The figures of checkAccountStatus, in one batch (full counts: called rarely, by migration tools). */
export const countAccountState = async (db: Db): Promise<AccountCounts> => {
  const { repoRoot, record, block, recordBlob, blob } = schema
  const [roots, records, blocks, prefs, expected, imported] = (await db.batch([
    db.orm.select({ cid: repoRoot.cid, rev: repoRoot.rev }).from(repoRoot).limit(1),
    db.orm.select({ n: sql<number>`count(*)` }).from(record),
    db.orm.select({ n: sql<number>`count(*)` }).from(block).where(isNull(block.removedAt)),
    db.orm.select({ n: sql<number>`count(*)` }).from(accountPref),
    db.orm.select({ n: sql<number>`count(distinct ${recordBlob.blobCid})` }).from(recordBlob),
    db.orm
      .select({ n: sql<number>`count(distinct ${recordBlob.blobCid})` })
      .from(recordBlob)
      .innerJoin(blob, eq(blob.cid, recordBlob.blobCid)),
  ])) as [{ cid: string; rev: string }[], ...{ n: number }[][]]
  return {
    root: roots[0] ?? null,
    records: Number(records[0].n),
    blocks: Number(blocks[0].n),
    prefs: Number(prefs[0].n),
    expectedBlobs: Number(expected[0].n),
    importedBlobs: Number(imported[0].n),
  }
}
