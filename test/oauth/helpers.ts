/**
 * Shared pieces of the OAuth unit tests: DPoP proofs signed with real keys
 * (jose, as clients make them) and a nonce source with a random key.
 */
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose'
import { DpopNonces } from '../../src/oauth/nonces'

export const ORIGIN = 'https://pds.example.com'

export const randomHmacKey = (): Promise<CryptoKey> =>
  crypto.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256', length: 256 }, false, ['sign', 'verify']) as Promise<CryptoKey>

export const newNonces = async (): Promise<DpopNonces> => new DpopNonces(await randomHmacKey())

export interface ProofKey {
  privateKey: CryptoKey
  jwk: JWK
  alg: string
}

export const newProofKey = async (alg = 'ES256'): Promise<ProofKey> => {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  return { privateKey, jwk: await exportJWK(publicKey), alg }
}

export interface ProofClaims {
  htm?: string
  htu?: string
  nonce?: string
  ath?: string
  jti?: string
  iat?: number
}

/** A DPoP proof as `@atproto/oauth-client` builds one (header typ/alg/jwk; iat, jti, htm, htu, nonce, ath). */
export const signProof = async (key: ProofKey, claims: ProofClaims, header: Record<string, unknown> = {}): Promise<string> => {
  const payload: Record<string, unknown> = {
    htm: claims.htm ?? 'POST',
    htu: claims.htu ?? `${ORIGIN}/oauth/token`,
    jti: claims.jti ?? crypto.randomUUID(),
    ...(claims.nonce !== undefined ? { nonce: claims.nonce } : {}),
    ...(claims.ath !== undefined ? { ath: claims.ath } : {}),
  }
  return new SignJWT(payload)
    .setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.jwk, ...header })
    .setIssuedAt(claims.iat ?? Math.floor(Date.now() / 1000))
    .sign(key.privateKey)
}
