/**
 * The sign-in form's POST, shared by the authorization and account pages:
 * the owner's password checked against the login limiter (same key as
 * createSession: handle and client IP), then a signed-in browser recorded and
 * its cookie set (persistent only when "remember this device" is ticked).
 */
import type { Context } from 'hono'
import type { OAuthContext } from '../oauth/context'
import { checkOwnerPassword, createDevice, type NewDevice } from '../oauth/devices'
import type { AppEnv } from './context'
import { setDeviceCookie } from './page-security'

export type BrowserSignIn = { ok: true; device: NewDevice } | { ok: false; message: string; status: 401 | 429 }

export const signInBrowser = async (c: Context<AppEnv>, ctx: OAuthContext, form: { password?: string; remember?: string }): Promise<BrowserSignIn> => {
  const limiter = c.get('deps').loginLimiter
  const result = await checkOwnerPassword(ctx, {
    password: form.password ?? '',
    ip: c.req.header('cf-connecting-ip') ?? 'local',
    limit: async (key) => (await limiter.limit({ key })).success,
  })
  if (!result.ok) {
    return result.reason === 'rate-limited'
      ? { ok: false, message: 'Too many attempts. Wait a minute, then try again.', status: 429 }
      : { ok: false, message: 'Wrong password.', status: 401 }
  }
  const remember = form.remember === '1'
  const device = await createDevice(ctx, { remember, userAgent: c.req.header('user-agent') ?? null })
  setDeviceCookie(c, device.secret, remember ? Math.floor((device.expiresAt - ctx.now) / 1000) : null)
  return { ok: true, device }
}

/** A form's string fields (files and repeated fields ignored). */
export const formFields = async (c: Context<AppEnv>): Promise<Record<string, string>> => {
  const form = await c.req.parseBody()
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(form)) if (typeof v === 'string') out[k] = v
  return out
}
