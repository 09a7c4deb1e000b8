/**
 * App passwords: separate, revocable passwords for third-party apps, in the
 * reference's `xxxx-xxxx-xxxx-xxxx` format (16 base32 characters, 80 bits).
 * Sessions made with one get the `appPass` scope (or `appPassPrivileged`),
 * which keeps them away from direct messages and account management.
 */
import { findAppPassword, findAppPasswordByHash, insertAppPassword, type AppPasswordRow } from '../db/account'
import type { Db } from '../db/client'
import { InvalidRequestError } from '../errors'
import { hex, randomBase32 } from './random'
import { AuthScope } from './scope'

const APP_PASSWORD_FORMAT = /^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$/

export interface AppPasswordGrant {
  name: string
  privileged: boolean
}

const generatePassword = (): string => {
  const chars = randomBase32(16)
  return [0, 4, 8, 12].map((i) => chars.slice(i, i + 4)).join('-')
}

/** A fast hash is enough for an 80-bit random secret, and lets login look it up directly. */
const hashAppPassword = async (did: string, password: string): Promise<string> => {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(`${did}\n${password}`))
  return hex(new Uint8Array(digest))
}

export const createAppPassword = async (db: Db, did: string, name: string, privileged: boolean): Promise<AppPasswordRow & { password: string }> => {
  const password = generatePassword()
  const row = { name, createdAt: new Date().toISOString(), privileged }
  const inserted = await insertAppPassword(db, { ...row, passwordHash: await hashAppPassword(did, password) })
  if (!inserted) throw new InvalidRequestError(`An app password named "${name}" already exists`)
  // Field order as the reference answers.
  return { name, password, createdAt: row.createdAt, privileged }
}

/** The app password `password` is, or null (the format check spares a D1 read for ordinary passwords). */
export const verifyAppPassword = async (db: Db, did: string, password: string): Promise<AppPasswordGrant | null> => {
  if (!APP_PASSWORD_FORMAT.test(password)) return null
  const row = await findAppPasswordByHash(db, await hashAppPassword(did, password))
  return row ? { name: row.name, privileged: row.privileged } : null
}

/** The grant a refresh token was issued under, or null if that app password was revoked. */
export const currentGrant = async (db: Db, name: string): Promise<AppPasswordGrant | null> => {
  const row = await findAppPassword(db, name)
  return row ? { name: row.name, privileged: row.privileged } : null
}

export const scopeFor = (grant: AppPasswordGrant | null): AuthScope =>
  grant === null ? AuthScope.Access : grant.privileged ? AuthScope.AppPassPrivileged : AuthScope.AppPass
