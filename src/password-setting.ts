/**
 * The owner's password setting (`PDS_PASSWORD`): its format, parsing, the
 * hash form and the constant-time check.
 *
 * A leaf module (it imports only jose) at the top of src/, because three
 * places need it and none should import the others: the config (env.ts
 * parses the setting at startup), the login code (src/auth) and the setup
 * scripts, which run it under Node.
 *
 * Production should store a salted hash, `pbkdf2-sha256$<iterations>$<salt>$<hash>`
 * (base64url parts; `npm run hash-password` makes one), so the plaintext never
 * sits in Cloudflare. A plain value is accepted for local dev. PBKDF2 because
 * it is what Web Crypto offers in workerd (capped at 100,000 iterations there).
 */
import { base64url } from 'jose'

const HASH_PREFIX = 'pbkdf2-sha256$'
export const PBKDF2_MAX_ITERATIONS = 100_000

export type PasswordSetting =
  | { kind: 'hash'; iterations: number; salt: Uint8Array; hash: Uint8Array }
  | { kind: 'plain'; digest: Uint8Array }

const encoder = new TextEncoder()

const sha256 = async (text: string): Promise<Uint8Array> =>
  new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(text)))

export const pbkdf2 = async (password: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> => {
  const key = await crypto.subtle.importKey('raw', encoder.encode(password), 'PBKDF2', false, ['deriveBits'])
  const bits = await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, key, 256)
  return new Uint8Array(bits)
}

/** Parses PDS_PASSWORD; throws an Error naming the problem (never the value). */
export const parsePasswordSetting = async (value: string): Promise<PasswordSetting> => {
  if (!value.startsWith(HASH_PREFIX)) return { kind: 'plain', digest: await sha256(value) }
  const [iterText, saltText, hashText] = value.slice(HASH_PREFIX.length).split('$')
  const iterations = Number(iterText)
  if (!Number.isInteger(iterations) || iterations < 10_000 || iterations > PBKDF2_MAX_ITERATIONS || !saltText || !hashText) {
    throw new Error(`PDS_PASSWORD hash must be ${HASH_PREFIX}<10000..100000>$<salt>$<hash>`)
  }
  let hash: Uint8Array
  let salt: Uint8Array
  try {
    hash = base64url.decode(hashText)
    salt = base64url.decode(saltText)
  } catch {
    throw new Error('PDS_PASSWORD hash: the salt and hash must be base64url')
  }
  if (hash.length !== 32) throw new Error('PDS_PASSWORD hash must be 32 bytes (base64url)')
  return { kind: 'hash', iterations, salt, hash }
}

/** Makes the hash form of a password (used by the hash-password script and tests). */
export const hashPassword = async (password: string, iterations = PBKDF2_MAX_ITERATIONS): Promise<string> => {
  const salt = crypto.getRandomValues(new Uint8Array(16))
  const hash = await pbkdf2(password, salt, iterations)
  return `${HASH_PREFIX}${iterations}$${base64url.encode(salt)}$${base64url.encode(hash)}`
}

const timingSafeEqual = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.byteLength !== b.byteLength) return false
  const subtle = crypto.subtle as SubtleCrypto & { timingSafeEqual?: (a: Uint8Array, b: Uint8Array) => boolean }
  if (subtle.timingSafeEqual) return subtle.timingSafeEqual(a, b)
  let diff = 0
  for (let i = 0; i < a.byteLength; i++) diff |= a[i] ^ b[i]
  return diff === 0
}

/** Constant-time check of a candidate password against the setting. */
export const verifyPassword = async (setting: PasswordSetting, candidate: string): Promise<boolean> => {
  if (setting.kind === 'plain') return timingSafeEqual(setting.digest, await sha256(candidate))
  return timingSafeEqual(setting.hash, await pbkdf2(candidate, setting.salt, setting.iterations))
}
