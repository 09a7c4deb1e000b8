/**
 * What keeps the HTML pages (authorization, account) safe to put in front of
 * a browser:
 *
 * - the signed-in browser's cookie: Secure, HttpOnly, SameSite=Lax (it must
 *   come along when an app sends the browser here), `__Host-` named on https;
 * - anti-forgery (CSRF): a signed double-submit token. A random value signed
 *   with an HKDF key of JWT_SECRET sits in a SameSite=Strict HttpOnly cookie
 *   and in every form; a POST must carry both, equal, with a valid signature,
 *   and a cross-site `Origin`/`Sec-Fetch-Site` is refused outright;
 * - headers: no caching, no framing (`frame-ancestors 'none'`), no script,
 *   images only from https (app logos), forms only to us and to the app's
 *   redirect target, and no referrer (page URLs carry request URIs).
 */
import type { Context } from 'hono'
import { deleteCookie, getCookie, setCookie } from 'hono/cookie'
import type { Config } from '../env'
import { hmac, oauthKeys } from '../oauth/keys'
import type { AppEnv } from './context'

const secure = (config: Config): boolean => config.serviceUrl.startsWith('https:')
const deviceCookieName = (config: Config): string => (secure(config) ? '__Host-pds-device' : 'pds-device')
const csrfCookieName = (config: Config): string => (secure(config) ? '__Host-pds-csrf' : 'pds-csrf')

export const readDeviceCookie = (c: Context<AppEnv>): string | null => getCookie(c, deviceCookieName(c.get('deps').config)) ?? null

/** Remembers a signed-in browser; a session cookie unless the owner chose to be remembered. */
export const setDeviceCookie = (c: Context<AppEnv>, secret: string, maxAgeSeconds: number | null): void => {
  setCookie(c, deviceCookieName(c.get('deps').config), secret, {
    path: '/',
    secure: true,
    httpOnly: true,
    sameSite: 'Lax',
    ...(maxAgeSeconds !== null ? { maxAge: maxAgeSeconds } : {}),
  })
}

export const clearDeviceCookie = (c: Context<AppEnv>): void => {
  deleteCookie(c, deviceCookieName(c.get('deps').config), { path: '/', secure: true })
}

const CSRF_FORMAT = /^[0-9a-f]{32}\.[A-Za-z0-9_-]{43}$/

const csrfValid = async (config: Config, token: string | undefined): Promise<boolean> => {
  if (!token || !CSRF_FORMAT.test(token)) return false
  const [nonce, signature] = token.split('.')
  return (await hmac((await oauthKeys(config)).csrf, `csrf:${nonce}`)) === signature
}

/**
 * The anti-forgery token for this browser's forms: its current cookie when
 * valid, else a new one (set on the response).
 */
export const csrfToken = async (c: Context<AppEnv>): Promise<string> => {
  const config = c.get('deps').config
  const existing = getCookie(c, csrfCookieName(config))
  if (existing && (await csrfValid(config, existing))) return existing
  const nonce = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('')
  const token = `${nonce}.${await hmac((await oauthKeys(config)).csrf, `csrf:${nonce}`)}`
  setCookie(c, csrfCookieName(config), token, { path: '/', secure: true, httpOnly: true, sameSite: 'Strict' })
  return token
}

/** True when a form POST comes from our own page in this browser. */
export const formIsGenuine = async (c: Context<AppEnv>, submitted: string | undefined): Promise<boolean> => {
  const config = c.get('deps').config
  const origin = c.req.header('origin')
  if (origin && origin !== 'null' && origin !== new URL(config.serviceUrl).origin) return false
  const site = c.req.header('sec-fetch-site')
  if (site && site !== 'same-origin' && site !== 'none') return false
  const cookie = getCookie(c, csrfCookieName(config))
  return cookie !== undefined && cookie === submitted && (await csrfValid(config, cookie))
}

/**
 * Headers of every page. `formTargets` lists where forms may lead besides
 * this server: the app's redirect URI, since browsers apply `form-action` to
 * the redirect that follows a submitted form.
 */
export const pageHeaders = (formTargets: string[] = []): Record<string, string> => ({
  'cache-control': 'no-store',
  pragma: 'no-cache',
  'content-security-policy': [
    "default-src 'none'",
    "style-src 'unsafe-inline'",
    'img-src https: data:',
    `form-action 'self'${formTargets.map((t) => ` ${t}`).join('')}`,
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; '),
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
})

/** The CSP source for where a redirect URI leads: its origin, or its private-use scheme. */
export const formTargetOf = (redirectUri: string): string => {
  const url = new URL(redirectUri)
  return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : url.protocol
}
