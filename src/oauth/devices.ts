/**
 * Browsers signed in to the authorization and account pages. Signing in
 * takes the owner's password (never an app password: those are for apps),
 * rate limited with the same key as createSession so the two share one
 * budget. The browser then holds a random secret in a cookie; D1 keeps only
 * its keyed hash. A remembered device stays signed in for 30 days, so an app
 * is approved with one click; otherwise for the browser session (at most 12
 * hours).
 */
import { deleteDevice, getDevice, insertDevice, type OAuthDeviceRow } from '../db/oauth-account'
import { verifyPassword } from '../password-setting'
import { iso, type OAuthContext } from './context'
import { hashSecret, randomToken } from './keys'

export const REMEMBERED_DEVICE_MS = 30 * 24 * 3600 * 1000
export const SESSION_DEVICE_MS = 12 * 3600 * 1000
/** As createSession: longer passwords are refused outright. */
const MAX_PASSWORD_LENGTH = 512

export type SignInResult = { ok: true } | { ok: false; reason: 'wrong-password' | 'rate-limited' }

/** Checks the owner's password, counting the attempt against the login limit for (handle, ip). */
export const checkOwnerPassword = async (
  ctx: OAuthContext,
  opts: { password: string; ip: string; limit: (key: string) => Promise<boolean> },
): Promise<SignInResult> => {
  if (!(await opts.limit(`${ctx.config.handle}-${opts.ip}`))) return { ok: false, reason: 'rate-limited' }
  if (opts.password.length === 0 || opts.password.length > MAX_PASSWORD_LENGTH) return { ok: false, reason: 'wrong-password' }
  return (await verifyPassword(ctx.config.password, opts.password)) ? { ok: true } : { ok: false, reason: 'wrong-password' }
}

export interface NewDevice {
  /** The cookie's value: shown to this browser only, never stored. */
  secret: string
  id: string
  remembered: boolean
  expiresAt: number
}

/** Records a signed-in browser after a successful password check. */
export const createDevice = async (ctx: OAuthContext, opts: { remember: boolean; userAgent: string | null }): Promise<NewDevice> => {
  const secret = randomToken('dev-', 32)
  const id = await hashSecret(ctx.config, secret)
  const expiresAt = ctx.now + (opts.remember ? REMEMBERED_DEVICE_MS : SESSION_DEVICE_MS)
  await insertDevice(ctx.db, {
    id,
    userAgent: opts.userAgent?.slice(0, 300) ?? null,
    remembered: opts.remember,
    createdAt: iso(ctx.now),
    expiresAt: iso(expiresAt),
  })
  return { secret, id, remembered: opts.remember, expiresAt }
}

/** The signed-in browser a cookie secret belongs to, if it is still signed in. */
export const findDevice = async (ctx: OAuthContext, secret: string | null | undefined): Promise<OAuthDeviceRow | null> => {
  if (!secret || !/^dev-[0-9a-f]{64}$/.test(secret)) return null
  return getDevice(ctx.db, await hashSecret(ctx.config, secret), iso(ctx.now))
}

export const signOutDevice = (ctx: OAuthContext, id: string): Promise<void> => deleteDevice(ctx.db, id)
