/**
 * The hosted account's row: status and current handle (drizzle table
 * `account`). One row, written at first start and by the lifecycle methods.
 */
import { eq } from 'drizzle-orm'
import type { BatchItem } from 'drizzle-orm/batch'
import type { Db } from './client'
import { schema } from './client'

const { account } = schema

export type AccountStatus = 'active' | 'deactivated' | 'takendown' | 'suspended'

export interface AccountRow {
  did: string
  handle: string
  status: AccountStatus
  createdAt: string
  deactivatedAt: string | null
  deleteAfter: string | null
}

export const selectAccount = (db: Db) => db.orm.select().from(account).limit(1)

export const getAccount = async (db: Db): Promise<AccountRow | null> => ((await selectAccount(db))[0] as AccountRow | undefined) ?? null

/** Creates the row unless another isolate already did (first start). */
export const insertAccountStatement = (db: Db, row: AccountRow): BatchItem<'sqlite'> =>
  db.orm.insert(account).values(row).onConflictDoNothing()

export const setAccountStatusStatement = (
  db: Db,
  did: string,
  change: { status: AccountStatus; deactivatedAt: string | null; deleteAfter: string | null },
): BatchItem<'sqlite'> => db.orm.update(account).set(change).where(eq(account.did, did))

export const setHandleStatement = (db: Db, did: string, handle: string): BatchItem<'sqlite'> =>
  db.orm.update(account).set({ handle }).where(eq(account.did, did))

/** The repo's root and the account row in one round trip (what every sync read checks first). */
export const getRootAndAccount = async (db: Db): Promise<{ root: { cid: string; rev: string } | null; account: AccountRow | null }> => {
  const [roots, accounts] = (await db.batch([
    db.orm.select({ cid: schema.repoRoot.cid, rev: schema.repoRoot.rev }).from(schema.repoRoot).limit(1),
    selectAccount(db),
  ])) as [{ cid: string; rev: string }[], AccountRow[]]
  return { root: roots[0] ?? null, account: accounts[0] ?? null }
}
