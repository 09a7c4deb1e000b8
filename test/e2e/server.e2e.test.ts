/**
 * com.atproto.server.*: describeServer and the session lifecycle (create,
 * get, refresh with the reference's grace period, delete), token misuse, and
 * the failed-login rate limit. Expected errors follow the reference PDS:
 * auth-verifier.ts, account-manager.ts and api/com/atproto/server/*.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { login, type PdsProcess, startPds, stopPds } from './harness'
import {
  createSession,
  decodeJwt,
  decodeJwtHeader,
  expectStatus,
  expectXrpcError,
  request,
  signHs256,
  xget,
  xpost,
} from './xrpc-client'

let pds: PdsProcess

beforeAll(async () => {
  pds = await startPds()
}, 120_000)

afterAll(async () => {
  await stopPds(pds)
})

const refresh = (token: string) => xpost(pds, 'com.atproto.server.refreshSession', undefined, token)
const getSession = (token?: string) => xget(pds, 'com.atproto.server.getSession', undefined, token)

describe('health and describeServer', () => {
  test('/xrpc/_health answers {version}', async () => {
    const res = expectStatus(await request(pds, '/xrpc/_health'), 200)
    expect(typeof res.body?.version).toBe('string')
  })

  test('describeServer has the reference shape', async () => {
    const res = expectStatus(await xget(pds, 'com.atproto.server.describeServer'), 200)
    expect(res.body.did).toBe(pds.did)
    expect(Array.isArray(res.body.availableUserDomains)).toBe(true)
    for (const d of res.body.availableUserDomains) expect(typeof d).toBe('string')
    expect(typeof res.body.inviteCodeRequired).toBe('boolean')
    // The reference always reports its blob size limit (5 MiB by default).
    expect(typeof res.body.blobUploadLimit).toBe('number')
    if (res.body.links !== undefined) expect(typeof res.body.links).toBe('object')
    if (res.body.contact !== undefined) expect(typeof res.body.contact).toBe('object')
    const allowed = ['did', 'availableUserDomains', 'inviteCodeRequired', 'phoneVerificationRequired', 'links', 'contact', 'blobUploadLimit']
    for (const k of Object.keys(res.body)) expect(allowed).toContain(k)
  })
})

describe('createSession', () => {
  test('by handle: tokens, did, handle, didDoc, active', async () => {
    const s = await createSession(pds, pds.handle, pds.password)
    expect(s.did).toBe(pds.did)
    expect(s.handle).toBe(pds.handle)
    expect(typeof s.accessJwt).toBe('string')
    expect(typeof s.refreshJwt).toBe('string')
    expect(s.active).toBe(true)
    expect((s.didDoc as { id?: string } | undefined)?.id).toBe(pds.did)
  })

  test('by DID, and the identifier is case-insensitive like the reference', async () => {
    expect((await createSession(pds, pds.did, pds.password)).did).toBe(pds.did)
    expect((await createSession(pds, pds.handle.toUpperCase(), pds.password)).did).toBe(pds.did)
  })

  test('tokens carry the reference claims (typ, scope, sub, aud, jti)', async () => {
    const s = await createSession(pds, pds.handle, pds.password)
    expect(decodeJwtHeader(s.accessJwt)).toMatchObject({ alg: 'HS256', typ: 'at+jwt' })
    expect(decodeJwt(s.accessJwt)).toMatchObject({ scope: 'com.atproto.access', sub: pds.did, aud: pds.did })
    expect(decodeJwtHeader(s.refreshJwt)).toMatchObject({ alg: 'HS256', typ: 'refresh+jwt' })
    const r = decodeJwt(s.refreshJwt)
    expect(r).toMatchObject({ scope: 'com.atproto.refresh', sub: pds.did, aud: pds.did })
    expect(typeof r.jti).toBe('string')
    const a = decodeJwt(s.accessJwt)
    expect(a.exp - a.iat).toBe(120 * 60)
  })

  test('the official client logs in and reads its session', async () => {
    const agent = await login(pds)
    const res = await agent.com.atproto.server.getSession()
    expect(res.data.did).toBe(pds.did)
    expect(res.data.handle).toBe(pds.handle)
  })

  test('wrong password and unknown identifier: same 401, same message', async () => {
    const wrong = await xpost(pds, 'com.atproto.server.createSession', { identifier: pds.handle, password: 'nope-nope' })
    expectXrpcError(wrong, 401, 'AuthenticationRequired', 'Invalid identifier or password')
    const unknown = await xpost(pds, 'com.atproto.server.createSession', {
      identifier: 'nobody-here.test',
      password: pds.password,
    })
    expectXrpcError(unknown, 401, 'AuthenticationRequired', 'Invalid identifier or password')
    expect(unknown.body).toEqual(wrong.body)
  })

  test('missing password is a 400 InvalidRequest (lexicon validation)', async () => {
    const res = await xpost(pds, 'com.atproto.server.createSession', { identifier: pds.handle })
    expectXrpcError(res, 400, 'InvalidRequest')
  })
})

describe('getSession', () => {
  test('returns handle, did, didDoc, active', async () => {
    const s = await createSession(pds, pds.handle, pds.password)
    const res = expectStatus(await getSession(s.accessJwt), 200)
    expect(res.body.did).toBe(pds.did)
    expect(res.body.handle).toBe(pds.handle)
    expect(res.body.active).toBe(true)
    expect(res.body.didDoc?.id).toBe(pds.did)
    expect(res.body.accessJwt).toBeUndefined()
  })
})

describe('refreshSession', () => {
  test('rotates: a new pair, and the new refresh token works', async () => {
    const s0 = await createSession(pds, pds.handle, pds.password)
    const r1 = expectStatus(await refresh(s0.refreshJwt), 200)
    expect(r1.body.did).toBe(pds.did)
    expect(r1.body.handle).toBe(pds.handle)
    expect(r1.body.active).toBe(true)
    expect(r1.body.refreshJwt).not.toBe(s0.refreshJwt)
    expect(decodeJwt(r1.body.refreshJwt).jti).not.toBe(decodeJwt(s0.refreshJwt).jti)
    expectStatus(await getSession(r1.body.accessJwt), 200)
    const r2 = expectStatus(await refresh(r1.body.refreshJwt), 200)
    expectStatus(await getSession(r2.body.accessJwt), 200)
  })

  test('reusing a rotated token within the grace period yields the same next token id', async () => {
    // Reference rotateRefreshToken: the old token keeps living for up to 2 h
    // and always re-grants a refresh token with its recorded nextId.
    const s0 = await createSession(pds, pds.handle, pds.password)
    const first = expectStatus(await refresh(s0.refreshJwt), 200)
    const again = expectStatus(await refresh(s0.refreshJwt), 200)
    expect(decodeJwt(again.body.refreshJwt).jti).toBe(decodeJwt(first.body.refreshJwt).jti)
    expectStatus(await refresh(first.body.refreshJwt), 200)
  })
})

describe('deleteSession', () => {
  test('revokes the refresh token: refresh afterwards is 400 ExpiredToken', async () => {
    const s = await createSession(pds, pds.handle, pds.password)
    expectStatus(await xpost(pds, 'com.atproto.server.deleteSession', undefined, s.refreshJwt), 200)
    expectXrpcError(await refresh(s.refreshJwt), 400, 'ExpiredToken', 'Token has been revoked')
  })

  test('needs a refresh token, not an access token', async () => {
    const s = await createSession(pds, pds.handle, pds.password)
    const res = await xpost(pds, 'com.atproto.server.deleteSession', undefined, s.accessJwt)
    expectXrpcError(res, 400, 'InvalidToken', 'Token could not be verified')
  })
})

describe('token misuse', () => {
  test('an access token on refreshSession is 400 InvalidToken', async () => {
    const s = await createSession(pds, pds.handle, pds.password)
    expectXrpcError(await refresh(s.accessJwt), 400, 'InvalidToken', 'Token could not be verified')
  })

  test('a refresh token on getSession is 400 InvalidToken', async () => {
    const s = await createSession(pds, pds.handle, pds.password)
    expectXrpcError(await getSession(s.refreshJwt), 400, 'InvalidToken', 'Token could not be verified')
  })

  test('a garbage bearer token is 400 InvalidToken', async () => {
    expectXrpcError(await getSession('not-a-jwt'), 400, 'InvalidToken', 'Token could not be verified')
    expectXrpcError(await getSession('aaa.bbb.ccc'), 400, 'InvalidToken', 'Token could not be verified')
  })

  test('no Authorization header on an auth-only method is 401 AuthMissing', async () => {
    expectXrpcError(await getSession(), 401, 'AuthMissing', 'Authentication Required')
    const res = await xpost(pds, 'com.atproto.repo.createRecord', {
      repo: pds.did,
      collection: 'app.bsky.feed.post',
      record: { text: 'x', createdAt: new Date().toISOString() },
    })
    expectXrpcError(res, 401, 'AuthMissing')
  })

  const claims = (expOffsetSec: number): Record<string, unknown> => {
    const iat = Math.floor(Date.now() / 1000) - 3600
    return { scope: 'com.atproto.access', sub: pds.did, aud: pds.did, iat, exp: Math.floor(Date.now() / 1000) + expOffsetSec }
  }

  test('a well-formed token we sign with the same secret is accepted (sanity check for the next test)', async () => {
    const jwt = signHs256(pds.jwtSecret, claims(600), { typ: 'at+jwt' })
    expectStatus(await getSession(jwt), 200)
  })

  test('an expired access token is 400 ExpiredToken', async () => {
    const jwt = signHs256(pds.jwtSecret, claims(-60), { typ: 'at+jwt' })
    expectXrpcError(await getSession(jwt), 400, 'ExpiredToken', 'Token has expired')
  })

  test('a token signed with another secret is 400 InvalidToken', async () => {
    const jwt = signHs256('f'.repeat(64), claims(600), { typ: 'at+jwt' })
    expectXrpcError(await getSession(jwt), 400, 'InvalidToken', 'Token could not be verified')
  })

  test('a token for another audience is 400 InvalidToken', async () => {
    const jwt = signHs256(pds.jwtSecret, { ...claims(600), aud: 'did:web:elsewhere.example' }, { typ: 'at+jwt' })
    expectXrpcError(await getSession(jwt), 400, 'InvalidToken', 'Token could not be verified')
  })

  test('an unsupported authorization scheme is 400 InvalidToken', async () => {
    const res = await request(pds, '/xrpc/com.atproto.server.getSession', {
      headers: { authorization: 'Weird abc' },
    })
    expectXrpcError(res, 400, 'InvalidToken', 'Unsupported authorization type: Weird')
  })
})

describe('login rate limit', () => {
  test('more than 30 attempts a minute for one identifier → 429 RateLimitExceeded; others unaffected', async () => {
    // A throwaway identifier: the limit is keyed by identifier (+IP), so the
    // real account stays usable. 70 attempts guarantee > 30 inside one
    // fixed 60 s window even if the run straddles a window boundary.
    const identifier = `ratelimit-${Date.now()}.test`
    const statuses: number[] = []
    let limited: { status: number; body: any } | undefined
    const attempt = async (): Promise<void> => {
      const res = await xpost(pds, 'com.atproto.server.createSession', { identifier, password: 'wrong-password' })
      statuses.push(res.status)
      if (res.status === 429) limited = { status: res.status, body: res.body }
    }
    for (let batch = 0; batch < 7; batch++) {
      await Promise.all(Array.from({ length: 10 }, attempt))
    }
    expect(statuses.filter((s) => s !== 401 && s !== 429)).toEqual([])
    expect(limited?.body?.error).toBe('RateLimitExceeded')
    expect(statuses.filter((s) => s === 401).length).toBeGreaterThanOrEqual(30)
    expect((await createSession(pds, pds.handle, pds.password)).did).toBe(pds.did)
  }, 120_000)
})
