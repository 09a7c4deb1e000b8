/**
 * Client authentication at PAR and the token endpoint (RFC 7523
 * `private_key_jwt` for confidential clients, nothing for public ones), and
 * the check that a code or refresh token is used by the client, with the
 * key, it was issued to. Rules as `@atproto/oauth-provider`: the assertion is
 * signed by a key of the client's JWKS named by `kid`, `iss` = `sub` = the
 * client id, `aud` = our issuer, at most 60 s old, its `jti` used once; the
 * DPoP key must not be the assertion key.
 */
import { calculateJwkThumbprint, decodeProtectedHeader, importJWK, jwtVerify, type JWK } from 'jose'
import type { OAuthClientCredentials } from '@atproto/oauth-types'
import { claimOnce } from '../db/oauth'
import { clientJwks, type OAuthClient } from './clients'
import { iso, type OAuthContext } from './context'
import { invalidClient, invalidGrant, invalidRequest, SIGNING_ALGS } from './errors'

export type ClientAuth = { method: 'none' } | { method: 'private_key_jwt'; kid: string; alg: string; jkt: string }

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
const ASSERTION_MAX_AGE_S = 60

const usableKeys = (keys: Awaited<ReturnType<typeof clientJwks>>, kid: string) =>
  keys.filter(
    (k) =>
      k.kid === kid &&
      !k.revoked &&
      (k.use === undefined || k.use === 'sig') &&
      (!Array.isArray(k.key_ops) || (k.key_ops as unknown[]).includes('verify')),
  )

/**
 * The key material alone: atproto clients publish `key_ops` such as
 * ["verify","encrypt","wrapKey"], which WebCrypto refuses to import for an
 * ECDSA key, so usage members are left out (the checks above used them).
 */
const KEY_MATERIAL = ['kty', 'crv', 'x', 'y', 'n', 'e']
const importable = (jwk: Awaited<ReturnType<typeof clientJwks>>[number]): JWK =>
  Object.fromEntries(KEY_MATERIAL.filter((m) => m in jwk).map((m) => [m, jwk[m]])) as JWK

/** Authenticates the client of a PAR or token request; `dpopJkt` is the proof's key. */
export const authenticateClient = async (
  ctx: OAuthContext,
  client: OAuthClient,
  credentials: OAuthClientCredentials,
  dpopJkt: string | null,
): Promise<ClientAuth> => {
  if ('client_secret' in credentials) throw invalidClient('Client secrets are not supported')
  const assertion = 'client_assertion' in credentials ? credentials : null
  if (!client.confidential) {
    if (assertion) throw invalidClient(`Client "${client.id}" is a public client: it must not send a client assertion`)
    return { method: 'none' }
  }
  if (!assertion) throw invalidRequest('client authentication method "private_key_jwt" required a "client_assertion"')
  if (assertion.client_assertion_type !== ASSERTION_TYPE) throw invalidClient(`Unsupported client_assertion_type "${assertion.client_assertion_type}"`)

  let kid: unknown
  let alg: unknown
  try {
    ;({ kid, alg } = decodeProtectedHeader(assertion.client_assertion))
  } catch {
    throw invalidClient('Validation of "client_assertion" failed: not a JWT')
  }
  if (typeof kid !== 'string' || !kid) throw invalidClient('Validation of "client_assertion" failed: "kid" required')
  if (typeof alg !== 'string' || !(SIGNING_ALGS as readonly string[]).includes(alg)) throw invalidClient(`Validation of "client_assertion" failed: unsupported "alg"`)
  // A key the client just rotated in may not be in our cached copy yet: look again once.
  let candidates = usableKeys(await clientJwks(ctx, client), kid)
  if (candidates.length === 0) candidates = usableKeys(await clientJwks(ctx, client, { fresh: true }), kid)
  const jwk = candidates.find((k) => k.alg === undefined || k.alg === alg)
  if (!jwk) throw invalidClient(`Validation of "client_assertion" failed: no key "${kid}" for ${alg} in the client's JWKS`)

  let payload: { jti?: unknown; exp?: unknown }
  try {
    const key = await importJWK(importable(jwk), alg)
    ;({ payload } = await jwtVerify(assertion.client_assertion, key, {
      issuer: client.id,
      subject: client.id,
      audience: ctx.config.serviceUrl,
      maxTokenAge: ASSERTION_MAX_AGE_S,
      algorithms: [alg],
      requiredClaims: ['jti', 'iat'],
      currentDate: new Date(ctx.now),
    }))
  } catch (err) {
    throw invalidClient(`Validation of "client_assertion" failed: ${(err as Error).message}`)
  }
  const jkt = await calculateJwkThumbprint(importable(jwk), 'sha256')
  if (dpopJkt !== null && jkt === dpopJkt) throw invalidRequest('The DPoP proof must be signed with a key different from the client assertion key')

  const exp = typeof payload.exp === 'number' ? payload.exp * 1000 : ctx.now + (ASSERTION_MAX_AGE_S + 6) * 1000
  if (!(await claimOnce(ctx.db, `client-assertion:${client.id}:${String(payload.jti)}`, iso(Math.max(exp, ctx.now + ASSERTION_MAX_AGE_S * 1000)), iso(ctx.now)))) {
    throw invalidGrant('private_key_jwt jti reused')
  }
  return { method: 'private_key_jwt', kid, alg, jkt }
}

/**
 * A code or refresh token may only be used by the client it was issued to,
 * authenticating as it did then: the same method and, for a confidential
 * client, the same key (a public client may later authenticate with a key).
 */
export const assertSameClientAuth = (issued: ClientAuth, current: ClientAuth): void => {
  if (issued.method === 'none') return
  if (current.method !== 'private_key_jwt' || current.jkt !== issued.jkt) {
    throw invalidGrant('The client must authenticate with the key it used when the session started')
  }
}
