/**
 * DPoP proofs (RFC 9449), checked in the reference provider's order: a
 * signed `dpop+jwt` with an embedded public key, fresh (`iat` within 10 s,
 * 180 s of clock skew tolerated), for this method (`htm`) and this URL (`htu`,
 * origin and path; the origin is our configured one, never the Host header),
 * with a nonce we issued, with `ath` binding it to the access token at the
 * resource server (and no `ath` at the authorization server). The proof's key
 * thumbprint (`jkt`) is what tokens are bound to.
 *
 * Pure apart from the clock: the one-time use of each proof (`jti`) is
 * enforced by the caller in D1 (`claimOnce`), after these checks pass, so a
 * proof refused for its nonce can be sent again with the nonce.
 */
import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify, type JWTPayload } from 'jose'
import { invalidDpopProof, SIGNING_ALGS, UseDpopNonceError } from './errors'
import { sha256b64url } from './keys'
import type { DpopNonces } from './nonces'

/** How old a proof may be, and how far clocks may disagree (seconds), as the reference. */
const MAX_AGE_S = 10
const CLOCK_TOLERANCE_S = 180
/** Clients use short random ids; anything this long is not a proof id. */
const MAX_JTI_LENGTH = 256

export interface DpopRequest {
  /** The `DPoP` header, or null when absent. */
  proof: string | null
  method: string
  /** The request URL, as this server is reachable (configured origin + path). */
  url: string
  /** At the resource server: the access token the proof must be bound to (`ath`). */
  accessToken?: string
  nonces: DpopNonces
  now?: number
}

export interface DpopProof {
  /** RFC 7638 SHA-256 thumbprint of the proof's key. */
  jkt: string
  jti: string
  /** Until when this proof could be accepted: its one-time record must outlive this (ms). */
  replayableUntil: number
}

const claim = (payload: JWTPayload, name: string): unknown => (payload as Record<string, unknown>)[name]

/** The origin and path of a URL (query and fragment are ignored, as the reference tolerates). */
const originAndPath = (value: string): string | null => {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return null
  }
  if (url.username || url.password || (url.protocol !== 'https:' && url.protocol !== 'http:')) return null
  return url.origin + url.pathname
}

/** Checks the proof of a request; null when the request carries none. */
export const verifyDpopProof = async (req: DpopRequest): Promise<DpopProof | null> => {
  if (req.proof === null) return null
  if (req.proof === '') throw invalidDpopProof('DPoP header cannot be empty')
  // Several DPoP headers arrive joined by commas, which no compact JWS contains.
  if (req.proof.includes(',')) throw invalidDpopProof('DPoP header must contain a single proof')
  const now = req.now ?? Date.now()

  let payload: JWTPayload
  let jwk: unknown
  try {
    const verified = await jwtVerify(req.proof, EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: [...SIGNING_ALGS],
      maxTokenAge: MAX_AGE_S,
      clockTolerance: CLOCK_TOLERANCE_S,
      currentDate: new Date(now),
    })
    payload = verified.payload
    jwk = verified.protectedHeader.jwk
  } catch (err) {
    throw invalidDpopProof(`Invalid DPoP proof: ${(err as Error).message}`)
  }

  const nonce = claim(payload, 'nonce')
  if (nonce !== undefined && typeof nonce !== 'string') throw invalidDpopProof('Invalid DPoP "nonce" type')
  const jti = payload.jti
  if (typeof jti !== 'string' || jti === '' || jti.length > MAX_JTI_LENGTH) throw invalidDpopProof('DPoP "jti" missing')
  if (claim(payload, 'htm') !== req.method) throw invalidDpopProof('DPoP "htm" mismatch')
  const htu = claim(payload, 'htu')
  if (typeof htu !== 'string') throw invalidDpopProof('DPoP "htu" missing')
  const proofTarget = originAndPath(htu)
  if (proofTarget === null) throw invalidDpopProof('DPoP "htu" is not a valid URL')
  if (proofTarget !== originAndPath(req.url)) throw invalidDpopProof('DPoP "htu" mismatch')

  if (nonce === undefined) throw new UseDpopNonceError('Authorization server requires nonce in DPoP proof')
  if (!(await req.nonces.isValid(nonce, now))) throw new UseDpopNonceError('DPoP "nonce" mismatch')

  const ath = claim(payload, 'ath')
  if (req.accessToken !== undefined) {
    if (ath !== (await sha256b64url(req.accessToken))) throw invalidDpopProof('DPoP "ath" mismatch')
  } else if (ath !== undefined) {
    throw invalidDpopProof('DPoP "ath" claim not allowed')
  }

  const jkt = await calculateJwkThumbprint(jwk as Parameters<typeof calculateJwkThumbprint>[0], 'sha256')
  // Accepted while iat is within its window: that, plus a margin, is how long the jti must be remembered.
  const iat = payload.iat as number
  const replayableUntil = Math.max(now, (iat + MAX_AGE_S + CLOCK_TOLERANCE_S + 10) * 1000)
  return { jkt, jti, replayableUntil }
}

/** The one-time key of a proof: per key thumbprint, so two clients' ids never collide. */
export const dpopReplayKey = (proof: DpopProof): string => `dpop:${proof.jkt}:${proof.jti}`

/**
 * A request's proof, checked and used up: required unless `optional`, and
 * refused if its `jti` was seen before (`claim` records it in D1; injected so
 * this module stays free of storage).
 */
export const acceptDpopProof = async (
  req: DpopRequest,
  claim: (key: string, replayableUntil: number) => Promise<boolean>,
): Promise<DpopProof> => {
  const proof = await verifyDpopProof(req)
  if (!proof) throw invalidDpopProof('DPoP proof required')
  if (!(await claim(dpopReplayKey(proof), proof.replayableUntil))) throw invalidDpopProof('DPoP proof replayed')
  return proof
}
