/**
 * The owner's email address and its confirmation, for the email methods the
 * Bluesky app calls. PDS_EMAIL / PDS_EMAIL_CONFIRMED give the starting
 * values; a confirmation or an update made through the app is kept in
 * `pds_state` and wins from then on. Codes are sent with Cloudflare's
 * `send_email` binding (EMAIL) from PDS_EMAIL_FROM, in the reference's
 * format (XXXXX-XXXXX, valid 15 minutes, one per purpose).
 */
import { randomBase32 } from '../auth/random'
import type { Db } from '../db/client'
import { deleteStateStatement, getStates, setStateStatement } from '../db/state'
import type { Config, WorkerEnv } from '../env'
import { InvalidRequestError } from '../errors'

const ADDRESS = 'email:address'
const CONFIRMED = 'email:confirmed'
const TOKEN_PREFIX = 'email-token:'
const TOKEN_LIFETIME_MS = 15 * 60 * 1000

export type TokenPurpose = 'confirm_email' | 'update_email' | 'plc_operation'

export interface EmailState {
  address: string | null
  confirmed: boolean
}

export const getEmailState = async (db: Db, cfg: Config): Promise<EmailState> => {
  const stored = await getStates(db, [ADDRESS, CONFIRMED])
  const address = stored.has(ADDRESS) ? stored.get(ADDRESS) || null : cfg.email
  return { address, confirmed: stored.has(CONFIRMED) ? stored.get(CONFIRMED) === 'true' : cfg.emailConfirmed }
}

/** Cloudflare's send_email binding and the address codes are sent from. */
export interface EmailSender {
  binding: SendEmail
  from: string
}

/** The binding and sender address, or null when this deployment cannot send email. */
export const emailSender = (env: WorkerEnv, cfg: Config): EmailSender | null =>
  env.EMAIL && cfg.emailFrom ? { binding: env.EMAIL, from: cfg.emailFrom } : null

const newToken = (): string => {
  const chars = randomBase32(10).toUpperCase()
  return `${chars.slice(0, 5)}-${chars.slice(5)}`
}

const SUBJECTS: Record<TokenPurpose, string> = {
  confirm_email: 'Email Confirmation',
  update_email: 'Email Update Requested',
  plc_operation: 'PLC Update Operation Requested',
}

/** Stores a fresh code for `purpose` (replacing any earlier one) and returns it. */
export const issueToken = async (db: Db, purpose: TokenPurpose, now = Date.now()): Promise<string> => {
  const token = newToken()
  await db.batch([setStateStatement(db, TOKEN_PREFIX + purpose, JSON.stringify({ token, expiresAt: now + TOKEN_LIFETIME_MS }), new Date(now).toISOString())])
  return token
}

/** Stores a fresh code for `purpose` (replacing any earlier one) and mails it to `to`. */
export const sendToken = async (db: Db, sender: EmailSender, purpose: TokenPurpose, to: string, now = Date.now()): Promise<void> => {
  const token = await issueToken(db, purpose, now)
  await sender.binding.send({
    from: sender.from,
    to,
    subject: SUBJECTS[purpose],
    text: `Your code is ${token}\n\nEnter it in your app within 15 minutes. If you did not ask for it, ignore this email.\n`,
  })
}

/** The pds_state key a purpose's code is kept under (npm run plc-token reads it). */
export const tokenStateKey = (purpose: TokenPurpose): string => TOKEN_PREFIX + purpose

/** Spends a code (single use). */
export const spendTokenStatement = (db: Db, purpose: TokenPurpose) => deleteStateStatement(db, TOKEN_PREFIX + purpose)

/** Checks a code with the reference's errors; it stays valid until used or replaced. */
export const checkToken = async (db: Db, purpose: TokenPurpose, token: string, now = Date.now()): Promise<void> => {
  const stored = (await getStates(db, [TOKEN_PREFIX + purpose])).get(TOKEN_PREFIX + purpose)
  const parsed = stored ? (JSON.parse(stored) as { token: string; expiresAt: number }) : null
  if (!parsed || parsed.token !== token.trim().toUpperCase()) throw new InvalidRequestError('Token is invalid', 'InvalidToken')
  if (parsed.expiresAt < now) throw new InvalidRequestError('Token is expired', 'ExpiredToken')
}

/** Marks the address confirmed and spends the confirmation code, atomically. */
export const confirmAddress = async (db: Db, now = new Date()): Promise<void> => {
  await db.batch([setStateStatement(db, CONFIRMED, 'true', now.toISOString()), deleteStateStatement(db, TOKEN_PREFIX + 'confirm_email')])
}

/** A new, unconfirmed address; every outstanding code is spent. */
export const changeAddress = async (db: Db, address: string, now = new Date()): Promise<void> => {
  await db.batch([
    setStateStatement(db, ADDRESS, address, now.toISOString()),
    setStateStatement(db, CONFIRMED, 'false', now.toISOString()),
    deleteStateStatement(db, TOKEN_PREFIX + 'confirm_email'),
    deleteStateStatement(db, TOKEN_PREFIX + 'update_email'),
  ])
}
