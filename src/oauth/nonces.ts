/**
 * Server-issued DPoP nonces (RFC 9449 §8), stateless as the reference
 * provider makes them: nonce(c) = base64url(HMAC-SHA256(key, c as 8 bytes
 * big-endian)) for the time counter c = floor(now / 60 s). A proof may carry
 * the nonce of the previous, current or next counter, and the server always
 * hands out the next one, so an issued nonce stays good for 2 to 3 minutes
 * (the spec: rotate at least every 5 minutes, accept recently stale ones).
 * Nothing is stored: every isolate computes the same values from the key.
 */
import { hmac } from './keys'

export const NONCE_ROTATION_MS = 60_000

export class DpopNonces {
  /** counter → nonce, a few entries per isolate. */
  private readonly cache = new Map<number, Promise<string>>()

  constructor(
    private readonly key: CryptoKey,
    private readonly rotationMs = NONCE_ROTATION_MS,
  ) {}

  private nonceFor(counter: number): Promise<string> {
    let nonce = this.cache.get(counter)
    if (!nonce) {
      const bytes = new Uint8Array(8)
      new DataView(bytes.buffer).setBigUint64(0, BigInt(counter))
      nonce = hmac(this.key, bytes)
      if (this.cache.size > 8) this.cache.clear()
      this.cache.set(counter, nonce)
    }
    return nonce
  }

  /** The nonce to send in `DPoP-Nonce` now. */
  next(now = Date.now()): Promise<string> {
    return this.nonceFor(Math.floor(now / this.rotationMs) + 1)
  }

  /** True when `nonce` is one this server handed out recently enough. */
  async isValid(nonce: string, now = Date.now()): Promise<boolean> {
    const c = Math.floor(now / this.rotationMs)
    const accepted = await Promise.all([this.nonceFor(c - 1), this.nonceFor(c), this.nonceFor(c + 1)])
    return accepted.includes(nonce)
  }
}
