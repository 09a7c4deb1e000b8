/**
 * Inter-service auth tokens: short JWTs signed ES256K with the repo signing
 * key, so any service can check them against the account's DID document.
 * They carry `iss` (the account), `aud` (the service DID the call is for),
 * `lxm` (the one XRPC method they allow) and a random `jti`.
 *
 * Written here rather than imported from `@atproto/xrpc-server` because that
 * package pulls Node's http stack into the bundle; the tests verify our
 * tokens with its `verifyJwt`.
 */
import { type Keypair, verifySignature } from '@atproto/crypto'
import { base64url } from 'jose'
import type { Config } from '../env'
import { AuthRequiredError } from '../errors'
import { randomHex } from './random'

/** Default lifetime of a service token, as the reference (60 s). */
export const SERVICE_JWT_DEFAULT_LIFETIME_S = 60

export interface ServiceJwtClaims {
  iss: string
  aud: string
  lxm: string | null
  /** Seconds since the epoch; default now + 60 s. */
  exp?: number
}

const jsonPart = (value: object): string => base64url.encode(JSON.stringify(value))

export const createServiceJwt = async (key: Keypair, claims: ServiceJwtClaims): Promise<string> => {
  const iat = Math.floor(Date.now() / 1000)
  const header = jsonPart({ typ: 'JWT', alg: key.jwtAlg })
  const payload = jsonPart({
    iat,
    iss: claims.iss,
    aud: claims.aud,
    exp: claims.exp ?? iat + SERVICE_JWT_DEFAULT_LIFETIME_S,
    ...(claims.lxm ? { lxm: claims.lxm } : {}),
    jti: randomHex(16),
  })
  const signature = await key.sign(new TextEncoder().encode(`${header}.${payload}`))
  return `${header}.${payload}.${base64url.encode(signature)}`
}

const decodePart = (part: string | undefined): Record<string, unknown> | null => {
  try {
    const value = JSON.parse(new TextDecoder().decode(base64url.decode(part ?? '')))
    return value && typeof value === 'object' ? value : null
  } catch {
    return null
  }
}

/** A token carrying `lxm` is a service token (as the reference decides); session tokens never do. */
export const isServiceJwt = (token: string): boolean => decodePart(token.split('.')[1])?.lxm != null

/**
 * Checks a service token presented to us: issued for this account, signed by
 * `signerKey` (a did:key: this PDS's key for a token from our getServiceAuth
 * that the video service hands back; the key the DID document lists for the
 * old PDS's token that creates the migrated account), addressed to this PDS,
 * for exactly `lxm`, not expired. Errors, names and the order of the checks
 * as `@atproto/xrpc-server`'s verifyJwt.
 */
export const verifyServiceJwt = async (cfg: Config, token: string, lxm: string, signerKey: () => Promise<string>): Promise<{ iss: string }> => {
  const parts = token.split('.')
  const header = decodePart(parts[0])
  const payload = decodePart(parts[1])
  if (parts.length !== 3 || typeof header?.alg !== 'string') throw new AuthRequiredError('poorly formatted jwt', 'BadJwt')
  // A session token is told apart by its type before its claims are looked at (xrpc-server's order).
  if (header.typ === 'at+jwt' || header.typ === 'refresh+jwt' || header.typ === 'dpop+jwt') {
    throw new AuthRequiredError(`Invalid jwt type "${header.typ}"`, 'BadJwtType')
  }
  if (!payload || typeof payload.exp !== 'number' || typeof payload.iss !== 'string' || typeof payload.aud !== 'string') {
    throw new AuthRequiredError('poorly formatted jwt', 'BadJwt')
  }
  if (Date.now() / 1000 > payload.exp) throw new AuthRequiredError('jwt expired', 'JwtExpired')
  if (payload.lxm !== lxm) {
    throw new AuthRequiredError(payload.lxm !== undefined ? `bad jwt lexicon method ("lxm"). must match: ${lxm}` : `missing jwt lexicon method ("lxm"). must match: ${lxm}`, 'BadJwtLexiconMethod')
  }
  // The issuer may name a service of the account (did#fragment); the key is the account's.
  const iss = payload.iss.split('#')[0]
  if (iss !== cfg.did) throw new AuthRequiredError('Untrusted issuer', 'UntrustedIss')
  const signed = new TextEncoder().encode(`${parts[0]}.${parts[1]}`)
  let key: string
  try {
    key = await signerKey()
  } catch {
    throw new AuthRequiredError('could not resolve iss did', 'BadJwtIss')
  }
  let valid = false
  try {
    valid = await verifySignature(key, signed, base64url.decode(parts[2]), { jwtAlg: header.alg, allowMalleableSig: true })
  } catch {
    valid = false
  }
  if (!valid) throw new AuthRequiredError('jwt signature does not match jwt issuer', 'BadJwtSignature')
  if (payload.aud !== cfg.serviceDid) throw new AuthRequiredError('jwt audience does not match service did', 'BadJwtAudience')
  return { iss }
}
