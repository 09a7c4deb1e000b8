/**
 * DPoP proof checks (src/oauth/dpop.ts) against proofs signed with real keys,
 * in the order and with the codes the reference provider uses: signature and
 * freshness, htm/htu, the server nonce (use_dpop_nonce), ath, and one-time
 * use (a replayed jti is refused, by the D1 claim the endpoints use).
 */
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from 'jose'
import { beforeEach, describe, expect, it } from 'vitest'
import { claimOnce } from '../../src/db/oauth'
import { openDb } from '../../src/db/client'
import { acceptDpopProof, verifyDpopProof, type DpopRequest } from '../../src/oauth/dpop'
import { OAuthError, UseDpopNonceError } from '../../src/oauth/errors'
import { sha256b64url } from '../../src/oauth/keys'
import type { DpopNonces } from '../../src/oauth/nonces'
import { workerEnv } from '../repo/fixtures'
import { newNonces, newProofKey, ORIGIN, signProof, type ProofKey } from './helpers'

let nonces: DpopNonces
let key: ProofKey
let nonce: string

beforeEach(async () => {
  nonces = await newNonces()
  key = await newProofKey()
  nonce = await nonces.next()
})

const request = (proof: string | null, extra: Partial<DpopRequest> = {}): DpopRequest => ({
  proof,
  method: 'POST',
  url: `${ORIGIN}/oauth/token`,
  nonces,
  ...extra,
})

/** The OAuth error a check throws (code and status), or null when it passed. */
const failure = async (p: Promise<unknown>): Promise<{ error: string; status: number; description: string } | null> => {
  try {
    await p
    return null
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err
    return { error: err.error, status: err.status, description: err.description }
  }
}

describe('a good proof', () => {
  it('verifies and yields the RFC 7638 thumbprint of its key', async () => {
    const proof = await verifyDpopProof(request(await signProof(key, { nonce })))
    expect(proof?.jkt).toBe(await calculateJwkThumbprint(key.jwk, 'sha256'))
    expect(proof?.replayableUntil).toBeGreaterThan(Date.now())
  })

  it('is accepted with any of the algorithms we advertise', async () => {
    for (const alg of ['ES256', 'ES384', 'PS256', 'RS256']) {
      const k = await newProofKey(alg)
      expect(await failure(verifyDpopProof(request(await signProof(k, { nonce }))))).toBeNull()
    }
  })

  it('no header is no proof (the endpoint decides whether it needs one)', async () => {
    expect(await verifyDpopProof(request(null))).toBeNull()
    expect(await failure(acceptDpopProof(request(null), async () => true))).toMatchObject({ error: 'invalid_dpop_proof', status: 401, description: 'DPoP proof required' })
  })

  it('a query string in htu is tolerated (compared on origin and path, as the reference)', async () => {
    expect(await failure(verifyDpopProof(request(await signProof(key, { nonce, htu: `${ORIGIN}/oauth/token?x=1` }))))).toBeNull()
  })
})

describe('refused proofs', () => {
  it('an empty header, a non-JWT, a wrong typ, a symmetric or private key', async () => {
    expect(await failure(verifyDpopProof(request('')))).toMatchObject({ error: 'invalid_dpop_proof', status: 401 })
    expect(await failure(verifyDpopProof(request('not-a-jwt')))).toMatchObject({ error: 'invalid_dpop_proof' })
    expect(await failure(verifyDpopProof(request(await signProof(key, { nonce }, { typ: 'JWT' }))))).toMatchObject({ error: 'invalid_dpop_proof' })
    const secret = new TextEncoder().encode('0123456789abcdef0123456789abcdef')
    const hs = await new SignJWT({ htm: 'POST', htu: `${ORIGIN}/oauth/token`, jti: 'x', nonce })
      .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: { kty: 'oct', k: 'AAAA' } as never })
      .setIssuedAt()
      .sign(secret)
    expect(await failure(verifyDpopProof(request(hs)))).toMatchObject({ error: 'invalid_dpop_proof' })
    const { privateKey } = await generateKeyPair('ES256', { extractable: true })
    const leaked = await signProof({ ...key, jwk: await exportJWK(privateKey) }, { nonce })
    expect(await failure(verifyDpopProof(request(leaked)))).toMatchObject({ error: 'invalid_dpop_proof' })
  })

  it('a signature by another key than the embedded one', async () => {
    const other = await newProofKey()
    const forged = await signProof({ ...other, jwk: key.jwk }, { nonce })
    expect(await failure(verifyDpopProof(request(forged)))).toMatchObject({ error: 'invalid_dpop_proof' })
  })

  it('htm and htu must be this request', async () => {
    expect(await failure(verifyDpopProof(request(await signProof(key, { nonce, htm: 'GET' }))))).toMatchObject({ description: 'DPoP "htm" mismatch' })
    expect(await failure(verifyDpopProof(request(await signProof(key, { nonce, htu: `${ORIGIN}/oauth/par` }))))).toMatchObject({ description: 'DPoP "htu" mismatch' })
    expect(await failure(verifyDpopProof(request(await signProof(key, { nonce, htu: 'https://evil.example.com/oauth/token' }))))).toMatchObject({
      description: 'DPoP "htu" mismatch',
    })
    expect(await failure(verifyDpopProof(request(await signProof(key, { nonce, htu: 'https://u:p@pds.example.com/oauth/token' }))))).toMatchObject({
      error: 'invalid_dpop_proof',
    })
  })

  it('iat: older than 10 s (plus 180 s skew) or too far in the future', async () => {
    const now = Math.floor(Date.now() / 1000)
    expect(await failure(verifyDpopProof(request(await signProof(key, { nonce, iat: now - 200 }))))).toMatchObject({ error: 'invalid_dpop_proof' })
    expect(await failure(verifyDpopProof(request(await signProof(key, { nonce, iat: now + 400 }))))).toMatchObject({ error: 'invalid_dpop_proof' })
    expect(await failure(verifyDpopProof(request(await signProof(key, { nonce, iat: now - 100 }))))).toBeNull()
  })
})

describe('server nonces', () => {
  it('a proof without a nonce gets use_dpop_nonce (400 at the authorization server)', async () => {
    const err = await failure(verifyDpopProof(request(await signProof(key, {}))))
    expect(err).toEqual({ error: 'use_dpop_nonce', status: 400, description: 'Authorization server requires nonce in DPoP proof' })
  })

  it('an unknown or expired nonce gets use_dpop_nonce; a recently stale one is accepted', async () => {
    await expect(verifyDpopProof(request(await signProof(key, { nonce: 'made-up' })))).rejects.toBeInstanceOf(UseDpopNonceError)
    const now = Date.now()
    const issued = await nonces.next(now)
    // Issued for the next minute: still good two minutes on, gone after three.
    expect(await failure(verifyDpopProof(request(await signProof(key, { nonce: issued }), { now: now + 120_000 })))).toBeNull()
    expect(await failure(verifyDpopProof(request(await signProof(key, { nonce: issued }), { now: now + 181_000 })))).toMatchObject({ description: 'DPoP "nonce" mismatch' })
  })

  it('a nonce of another server (another key) is refused', async () => {
    const other = await newNonces()
    expect(await failure(verifyDpopProof(request(await signProof(key, { nonce: await other.next() }))))).toMatchObject({ error: 'use_dpop_nonce' })
  })
})

describe('ath binds the proof to the access token', () => {
  const token = `tok-${'a'.repeat(64)}`

  it('required and checked at the resource server', async () => {
    const rs = { method: 'GET', url: `${ORIGIN}/xrpc/com.atproto.server.getSession`, accessToken: token }
    const ath = await sha256b64url(token)
    const good = await signProof(key, { nonce, htm: 'GET', htu: rs.url, ath })
    expect(await failure(verifyDpopProof(request(good, rs)))).toBeNull()
    const none = await signProof(key, { nonce, htm: 'GET', htu: rs.url })
    expect(await failure(verifyDpopProof(request(none, rs)))).toMatchObject({ description: 'DPoP "ath" mismatch' })
    const other = await signProof(key, { nonce, htm: 'GET', htu: rs.url, ath: await sha256b64url(`${token}x`) })
    expect(await failure(verifyDpopProof(request(other, rs)))).toMatchObject({ description: 'DPoP "ath" mismatch' })
  })

  it('refused at the authorization server', async () => {
    expect(await failure(verifyDpopProof(request(await signProof(key, { nonce, ath: 'x' }))))).toMatchObject({ error: 'invalid_dpop_proof' })
  })
})

describe('one-time use', () => {
  it('a replayed jti is refused, through the same D1 claim the endpoints use', async () => {
    const db = openDb(workerEnv.DB)
    const claim = (k: string, until: number) => claimOnce(db, k, new Date(until).toISOString(), new Date().toISOString())
    const proof = await signProof(key, { nonce, jti: `replay-${crypto.randomUUID()}` })
    expect(await failure(acceptDpopProof(request(proof), claim))).toBeNull()
    expect(await failure(acceptDpopProof(request(proof), claim))).toMatchObject({ error: 'invalid_dpop_proof', description: 'DPoP proof replayed' })
    // The same jti from another key is another proof.
    const other = await newProofKey()
    expect(await failure(acceptDpopProof(request(await signProof(other, { nonce, jti: (await verifyDpopProof(request(proof)))?.jti })), claim))).toBeNull()
  })

  it('claimOnce: once until it expires, then it may be claimed again', async () => {
    const db = openDb(workerEnv.DB)
    const k = `test:${crypto.randomUUID()}`
    expect(await claimOnce(db, k, '2030-01-01T00:00:10.000Z', '2030-01-01T00:00:00.000Z')).toBe(true)
    expect(await claimOnce(db, k, '2030-01-01T00:00:20.000Z', '2030-01-01T00:00:05.000Z')).toBe(false)
    expect(await claimOnce(db, k, '2030-01-01T00:00:40.000Z', '2030-01-01T00:00:11.000Z')).toBe(true)
  })
})
