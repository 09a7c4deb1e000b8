/**
 * Interop vectors `crypto/*` (https://atproto.com/specs/cryptography):
 * ECDSA signature checks for P-256 and K-256 (low-S compact signatures only)
 * and did:key encoding, via `@atproto/crypto`.
 */
import {
  P256Keypair,
  Secp256k1Keypair,
  formatDidKey,
  p256Plugin,
  parseDidKey,
  secp256k1Plugin,
  verifySignature,
} from '@atproto/crypto'
import signatureFixturesJson from '@vectors/crypto/signature-fixtures.json'
import didKeyK256Json from '@vectors/crypto/w3c_didkey_K256.json'
import didKeyP256Json from '@vectors/crypto/w3c_didkey_P256.json'
import { base58btc } from 'multiformats/bases/base58'
import { describe, expect, it } from 'vitest'
import { fromBase64 } from './vectors'

interface SignatureFixture {
  comment: string
  messageBase64: string
  algorithm: 'ES256' | 'ES256K'
  didDocSuite: string
  publicKeyDid: string
  publicKeyMultibase: string
  signatureBase64: string
  validSignature: boolean
  tags: string[]
}
const signatureFixtures = signatureFixturesJson as SignatureFixture[]
const didKeyK256 = didKeyK256Json as { privateKeyBytesHex: string; publicDidKey: string }[]
const didKeyP256 = didKeyP256Json as { privateKeyBytesBase58: string; publicDidKey: string }[]

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((byte, i) => byte === b[i])

/**
 * Outcome of a signature check. `verifySignature` answers false for a
 * high-S signature but throws for one of the wrong length (DER): both are a
 * rejection, and a caller must treat the throw as one.
 */
const verifyOutcome = async (
  did: string,
  message: Uint8Array,
  signature: Uint8Array,
  opts?: { allowMalleableSig: boolean },
): Promise<'valid' | 'invalid' | 'threw'> => {
  try {
    return (await verifySignature(did, message, signature, opts)) ? 'valid' : 'invalid'
  } catch {
    return 'threw'
  }
}

describe('interop vectors: crypto', () => {
  it('signature-fixtures: valid signatures verify, high-S and DER ones are rejected', async () => {
    expect(signatureFixtures.length).toBeGreaterThan(0)
    const failures: string[] = []
    for (const fixture of signatureFixtures) {
      const message = fromBase64(fixture.messageBase64)
      const signature = fromBase64(fixture.signatureBase64)
      const outcome = await verifyOutcome(fixture.publicKeyDid, message, signature)
      if ((outcome === 'valid') !== fixture.validSignature) {
        failures.push(`${fixture.comment}: expected ${fixture.validSignature ? 'valid' : 'rejected'}, got ${outcome}`)
      }
      // A high-S vector must be a real signature that fails only on the
      // low-S rule; otherwise it would not be testing that rule.
      if (fixture.tags.includes('high-s')) {
        const lax = await verifyOutcome(fixture.publicKeyDid, message, signature, { allowMalleableSig: true })
        if (lax !== 'valid') failures.push(`${fixture.comment}: not a valid signature even when high-S is allowed (${lax})`)
      }
      // The did:key and the legacy multibase key of the DID document name
      // the same (compressed) public key with the same algorithm.
      const parsed = parseDidKey(fixture.publicKeyDid)
      const plugin = parsed.jwtAlg === 'ES256' ? p256Plugin : secp256k1Plugin
      if (parsed.jwtAlg !== fixture.algorithm) {
        failures.push(`${fixture.comment}: did:key algorithm ${parsed.jwtAlg}, expected ${fixture.algorithm}`)
      }
      if (!bytesEqual(plugin.compressPubkey(parsed.keyBytes), base58btc.decode(fixture.publicKeyMultibase))) {
        failures.push(`${fixture.comment}: publicKeyMultibase is not the did:key's key`)
      }
    }
    expect(failures).toEqual([])
  })

  it('w3c_didkey_K256: private key → did:key, and did:key round-trips', async () => {
    expect(didKeyK256.length).toBeGreaterThan(0)
    const failures: string[] = []
    for (const { privateKeyBytesHex, publicDidKey } of didKeyK256) {
      const keypair = await Secp256k1Keypair.import(privateKeyBytesHex)
      if (keypair.did() !== publicDidKey) failures.push(`${publicDidKey}: keypair gives ${keypair.did()}`)
      const { jwtAlg, keyBytes } = parseDidKey(publicDidKey)
      if (jwtAlg !== 'ES256K' || formatDidKey(jwtAlg, keyBytes) !== publicDidKey) {
        failures.push(`${publicDidKey}: parse/format round trip gives ${jwtAlg} ${formatDidKey(jwtAlg, keyBytes)}`)
      }
    }
    expect(failures).toEqual([])
  })

  it('w3c_didkey_P256: private key → did:key, and did:key round-trips', async () => {
    expect(didKeyP256.length).toBeGreaterThan(0)
    const failures: string[] = []
    for (const { privateKeyBytesBase58, publicDidKey } of didKeyP256) {
      const keypair = await P256Keypair.import(base58btc.baseDecode(privateKeyBytesBase58))
      if (keypair.did() !== publicDidKey) failures.push(`${publicDidKey}: keypair gives ${keypair.did()}`)
      const { jwtAlg, keyBytes } = parseDidKey(publicDidKey)
      if (jwtAlg !== 'ES256' || formatDidKey(jwtAlg, keyBytes) !== publicDidKey) {
        failures.push(`${publicDidKey}: parse/format round trip gives ${jwtAlg} ${formatDidKey(jwtAlg, keyBytes)}`)
      }
    }
    expect(failures).toEqual([])
  })
})
