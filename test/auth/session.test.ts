/**
 * Password sessions (src/auth/session.ts) and their verification
 * (src/auth/verifier.ts): access and refresh tokens are not interchangeable,
 * expiry is ExpiredToken, and refresh rotation has the reference's grace
 * period (reusing a just-rotated token yields the same successor), while a
 * revoked or past-grace token yields nothing.
 */
import * as jose from 'jose'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { openDb, type Db } from '../../src/db/client'
import { getRefreshToken } from '../../src/db/tokens'
import type { Config } from '../../src/env'
import { AuthScope, createSessionTokens, revokeSession, rotateSession } from '../../src/auth/session'
import { accessAuth, accessOrServiceAuth, anyRefreshAuth, fullAccessAuth, optionalAccessAuth, refreshAuth, type AuthRequest } from '../../src/auth/verifier'
import { KvCache } from '../../src/cache/kv-cache'
import { XrpcError } from '../../src/errors'
import { testConfig, wipeDatabase, workerEnv } from '../repo/fixtures'

const bearer = (token: string): string => `Bearer ${token}`

/** The auth policies as a route runs them, for an Authorization header. */
const cache = new KvCache(workerEnv.CACHE)
const request = (config: Config, authorization: string | undefined, nsid = 'com.atproto.server.getSession'): AuthRequest => ({
  config,
  cache,
  db: openDb(workerEnv.DB),
  authorization: authorization ?? null,
  nsid,
  forwarded: false,
  request: new Request(`${config.serviceUrl}/xrpc/${nsid}`),
  setHeader: () => undefined,
})
const verifyAccess = (config: Config, header: string | undefined) => accessAuth(request(config, header))
const verifyOptionalAccess = (config: Config, header: string | undefined) => optionalAccessAuth(request(config, header))
const verifyRefresh = (config: Config, header: string | undefined, opts: { allowExpired?: boolean } = {}) =>
  (opts.allowExpired ? anyRefreshAuth : refreshAuth)(request(config, header))
const jti = (refreshJwt: string): string => jose.decodeJwt(refreshJwt).jti as string

/** The XRPC error a verification throws (name and status), or null if it passed. */
const xrpcFailure = async (promise: Promise<unknown>): Promise<{ status: number; error: string } | null> => {
  try {
    await promise
    return null
  } catch (err) {
    if (!(err instanceof XrpcError)) throw err
    return { status: err.status, error: err.error }
  }
}

let cfg: Config
let db: Db

beforeEach(async () => {
  await wipeDatabase()
  cfg = await testConfig()
  db = openDb(workerEnv.DB)
})

afterEach(() => {
  vi.useRealTimers()
})

describe('verifying tokens', () => {
  it('an access token verifies as access, with the account DID and scope', async () => {
    const { accessJwt } = await createSessionTokens(db, cfg, cfg.did)
    const access = await verifyAccess(cfg, bearer(accessJwt))
    expect(access).toMatchObject({ type: 'access', kind: 'password', did: cfg.did })
    expect(access.mayManageAccount()).toBe(true)
    expect(await verifyOptionalAccess(cfg, bearer(accessJwt))).toMatchObject({ did: cfg.did })
    expect(await verifyOptionalAccess(cfg, undefined)).toBeNull()
    expect(jose.decodeProtectedHeader(accessJwt).typ).toBe('at+jwt')
  })

  it('a refresh token is refused as access, and an access token as refresh (InvalidToken)', async () => {
    const { accessJwt, refreshJwt } = await createSessionTokens(db, cfg, cfg.did)
    expect(await xrpcFailure(verifyAccess(cfg, bearer(refreshJwt)))).toEqual({ status: 400, error: 'InvalidToken' })
    expect(await xrpcFailure(verifyRefresh(cfg, bearer(accessJwt)))).toEqual({ status: 400, error: 'InvalidToken' })
    expect(await verifyRefresh(cfg, bearer(refreshJwt))).toEqual({ type: 'refresh', did: cfg.did, tokenId: jti(refreshJwt) })
  })

  it('missing, malformed, forged and wrong-audience tokens', async () => {
    const { accessJwt } = await createSessionTokens(db, cfg, cfg.did)
    expect(await xrpcFailure(verifyAccess(cfg, undefined))).toEqual({ status: 401, error: 'AuthMissing' })
    expect(await xrpcFailure(verifyAccess(cfg, accessJwt))).toEqual({ status: 400, error: 'InvalidToken' })
    expect(await xrpcFailure(verifyAccess(cfg, `Basic ${accessJwt}`))).toEqual({ status: 400, error: 'InvalidToken' })
    const [h, p] = accessJwt.split('.')
    expect(await xrpcFailure(verifyAccess(cfg, bearer(`${h}.${p}.AAAA`)))).toEqual({ status: 400, error: 'InvalidToken' })
    const sign = (claims: jose.JWTPayload, aud: string) =>
      new jose.SignJWT(claims).setProtectedHeader({ typ: 'at+jwt', alg: 'HS256' }).setAudience(aud).setSubject(cfg.did).setIssuedAt().setExpirationTime('1h').sign(cfg.jwtSecret)
    expect(await xrpcFailure(verifyAccess(cfg, bearer(await sign({ scope: AuthScope.Access }, 'did:web:elsewhere'))))).toEqual({
      status: 400,
      error: 'InvalidToken',
    })
    // Right key and audience, wrong scope.
    expect(await xrpcFailure(verifyAccess(cfg, bearer(await sign({ scope: AuthScope.Refresh }, cfg.serviceDid))))).toEqual({
      status: 400,
      error: 'InvalidToken',
    })
    expect(await xrpcFailure(verifyAccess(cfg, bearer(await sign({ scope: AuthScope.AppPass }, cfg.serviceDid))))).toBeNull()
  })

  it('a token signed with our secret but naming another subject is invalid for every policy', async () => {
    const other = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
    const sign = (typ: string, claims: jose.JWTPayload) =>
      new jose.SignJWT(claims).setProtectedHeader({ typ, alg: 'HS256' }).setAudience(cfg.serviceDid).setSubject(other).setIssuedAt().setExpirationTime('1h').sign(cfg.jwtSecret)
    const access = bearer(await sign('at+jwt', { scope: AuthScope.Access }))
    const refresh = bearer(await sign('refresh+jwt', { scope: AuthScope.Refresh, jti: 'some-token-id' }))
    const refused = { status: 400, error: 'InvalidToken' }
    expect(await xrpcFailure(verifyAccess(cfg, access))).toEqual(refused)
    expect(await xrpcFailure(verifyOptionalAccess(cfg, access))).toEqual(refused)
    expect(await xrpcFailure(verifyRefresh(cfg, refresh))).toEqual(refused)
    expect(await xrpcFailure(verifyRefresh(cfg, refresh, { allowExpired: true }))).toEqual(refused)
    const asUpload = request(cfg, access, 'com.atproto.repo.uploadBlob')
    expect(await xrpcFailure(accessOrServiceAuth(asUpload))).toEqual(refused)
    expect(await xrpcFailure(fullAccessAuth(asUpload))).toEqual(refused)
  })

  it('expired tokens are ExpiredToken; deleteSession may still read an expired refresh token', async () => {
    const { accessJwt, refreshJwt } = await createSessionTokens(db, cfg, cfg.did)
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(Date.now() + 3 * 3600 * 1000)
    expect(await xrpcFailure(verifyAccess(cfg, bearer(accessJwt)))).toEqual({ status: 400, error: 'ExpiredToken' })
    vi.setSystemTime(Date.now() + 91 * 24 * 3600 * 1000)
    expect(await xrpcFailure(verifyRefresh(cfg, bearer(refreshJwt)))).toEqual({ status: 400, error: 'ExpiredToken' })
    expect(await verifyRefresh(cfg, bearer(refreshJwt), { allowExpired: true })).toMatchObject({ tokenId: jti(refreshJwt) })
  })
})

describe('refresh rotation', () => {
  it('rotates to a new token and shortens the old one to the grace period', async () => {
    const { refreshJwt } = await createSessionTokens(db, cfg, cfg.did)
    const id = jti(refreshJwt)
    const next = await rotateSession(db, cfg, id)
    expect(next).not.toBeNull()
    const nextId = jti(next!.refreshJwt)
    expect(nextId).not.toBe(id)
    expect(await verifyAccess(cfg, bearer(next!.accessJwt))).toMatchObject({ did: cfg.did })
    const old = await getRefreshToken(db, id)
    expect(old?.nextId).toBe(nextId)
    const graceLeft = Date.parse(old!.expiresAt) - Date.now()
    expect(graceLeft).toBeGreaterThan(2 * 3600 * 1000 - 60_000)
    expect(graceLeft).toBeLessThanOrEqual(2 * 3600 * 1000)
    expect(await getRefreshToken(db, nextId)).not.toBeNull()
  })

  it('reusing a rotated token within the grace period yields the same successor', async () => {
    const { refreshJwt } = await createSessionTokens(db, cfg, cfg.did)
    const id = jti(refreshJwt)
    const first = await rotateSession(db, cfg, id)
    const again = await rotateSession(db, cfg, id)
    expect(jti(again!.refreshJwt)).toBe(jti(first!.refreshJwt))
    // The successor itself rotates on normally.
    const third = await rotateSession(db, cfg, jti(first!.refreshJwt))
    expect(jti(third!.refreshJwt)).not.toBe(jti(first!.refreshJwt))
  })

  it('two concurrent refreshes of one token agree on the successor', async () => {
    const { refreshJwt } = await createSessionTokens(db, cfg, cfg.did)
    const id = jti(refreshJwt)
    const [a, b] = await Promise.all([rotateSession(db, cfg, id), rotateSession(db, cfg, id)])
    expect(a).not.toBeNull()
    expect(jti(a!.refreshJwt)).toBe(jti(b!.refreshJwt))
    const rows = await workerEnv.DB.prepare('SELECT count(*) AS n FROM refresh_token').first<{ n: number }>()
    expect(rows?.n).toBe(2)
  })

  it('past the grace period the old token is refused', async () => {
    const { refreshJwt } = await createSessionTokens(db, cfg, cfg.did)
    const id = jti(refreshJwt)
    const next = await rotateSession(db, cfg, id)
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(Date.now() + 2 * 3600 * 1000 + 60_000)
    expect(await rotateSession(db, cfg, id)).toBeNull()
    expect(await rotateSession(db, cfg, jti(next!.refreshJwt))).not.toBeNull()
  })

  it('a revoked token cannot be rotated; an unknown one neither', async () => {
    const { refreshJwt } = await createSessionTokens(db, cfg, cfg.did)
    const id = jti(refreshJwt)
    await revokeSession(db, id)
    expect(await rotateSession(db, cfg, id)).toBeNull()
    expect(await rotateSession(db, cfg, 'no-such-token')).toBeNull()
  })
})
