/**
 * The OAuth server's secrets, derived from JWT_SECRET with HKDF-SHA256
 * (RFC 5869), one key per purpose (distinct `info` strings), so no new secret
 * has to be configured and a key for one purpose is useless for another:
 *
 * - `dpopNonce`: HMAC of the rotating DPoP nonces (src/oauth/nonces.ts);
 * - `secretHash`: keyed hash under which codes, tokens and device cookies are
 *   stored in D1 (a copy of the database cannot even test a guess);
 * - `csrf`: signs the pages' anti-forgery cookie (src/http/page-security.ts).
 *
 * Changing JWT_SECRET therefore ends every OAuth session and signed-in
 * browser, as it already ends every password session.
 */
import type { Config } from '../env'

export interface OAuthKeys {
  dpopNonce: CryptoKey
  secretHash: CryptoKey
  csrf: CryptoKey
}

const derived = new WeakMap<Config, Promise<OAuthKeys>>()

const hmacKey = async (base: CryptoKey, info: string): Promise<CryptoKey> =>
  crypto.subtle.deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: new TextEncoder().encode(`edge-pds oauth ${info} v1`) },
    base,
    { name: 'HMAC', hash: 'SHA-256', length: 256 },
    false,
    ['sign', 'verify'],
  )

const derive = async (secret: Uint8Array): Promise<OAuthKeys> => {
  const base = await crypto.subtle.importKey('raw', secret, 'HKDF', false, ['deriveKey'])
  const [dpopNonce, secretHash, csrf] = await Promise.all([hmacKey(base, 'dpop-nonce'), hmacKey(base, 'secret-hash'), hmacKey(base, 'csrf')])
  return { dpopNonce, secretHash, csrf }
}

/** The keys of this config (derived once per isolate). */
export const oauthKeys = (cfg: Config): Promise<OAuthKeys> => {
  let keys = derived.get(cfg)
  if (!keys) {
    keys = derive(cfg.jwtSecret)
    derived.set(cfg, keys)
  }
  return keys
}

const b64url = (bytes: ArrayBuffer): string => {
  let s = ''
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b)
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/** HMAC-SHA256 of `data` under `key`, base64url. */
export const hmac = async (key: CryptoKey, data: string | Uint8Array): Promise<string> =>
  b64url(await crypto.subtle.sign('HMAC', key, typeof data === 'string' ? new TextEncoder().encode(data) : data))

/** How a secret (code, token, cookie) is stored and looked up: its keyed hash. */
export const hashSecret = async (cfg: Config, secret: string): Promise<string> => hmac((await oauthKeys(cfg)).secretHash, secret)

/** `prefix` + 32 random bytes in hex: codes, tokens, ids. */
export const randomToken = (prefix: string, bytes = 32): string =>
  prefix + Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('')

/** base64url SHA-256 of an ASCII string (PKCE S256, DPoP `ath`). */
export const sha256b64url = async (value: string): Promise<string> => b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(value)))
