/**
 * Random secrets and their text forms, shared by session tokens, service
 * tokens, app passwords and email codes.
 */

/** Lowercase hex of `bytes`. */
export const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')

export const randomHex = (byteCount: number): string => hex(crypto.getRandomValues(new Uint8Array(byteCount)))

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'

/** `length` random characters of lowercase base32 (a–z, 2–7); 5 bits each, unbiased since 32 divides 256. */
export const randomBase32 = (length: number): string =>
  Array.from(crypto.getRandomValues(new Uint8Array(length)), (b) => BASE32[b % 32]).join('')
