/**
 * Our OAuth server next to the official reference PDS (`@atproto/pds` from
 * test/peers, on loopback) where the protocol fixes the answer: the discovery
 * documents field by field (with the differences we chose listed and
 * explained), the PAR answer's shape, and the status and error code of the
 * same malformed or refused PAR, token and resource-server requests, sent
 * with real DPoP proofs to both.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { randomBytes } from 'node:crypto'
import { type PdsProcess, startPds, stopPds } from './harness'
import { HAVE_REFERENCE, type ReferencePds, spawnReference } from './helpers/reference-peer'
import { type Answer, dpopProof, loopbackClientId, newDpopKey, pkce, RawClient, type Target } from './helpers/oauth-raw'

let pds: PdsProcess
let refPds: ReferencePds
let ours: Target
let ref: Target

beforeAll(async () => {
  if (!HAVE_REFERENCE) return
  const [p, r] = await Promise.all([startPds(), spawnReference({ handle: 'alice.test', password: 'oracle-password-1' })])
  pds = p
  refPds = r as ReferencePds
  ours = { url: pds.url, publicUrl: pds.publicUrl }
  ref = { url: refPds.url, publicUrl: refPds.url }
}, 240_000)

afterAll(async () => {
  await Promise.all([stopPds(pds), refPds?.stop()])
})

const getJson = async (t: Target, path: string) => {
  const res = await fetch(`${t.url}${path}`)
  return { status: res.status, type: res.headers.get('content-type'), cors: res.headers.get('access-control-allow-origin'), body: (await res.json()) as Record<string, unknown> }
}

/** Replaces a server's own origin, so two documents compare. */
const normalise = (value: unknown, t: Target): unknown => JSON.parse(JSON.stringify(value).replaceAll(t.publicUrl, '<origin>'))

const REDIRECT = 'http://127.0.0.1/callback'
const SCOPE = 'atproto transition:generic'
const CLIENT_ID = loopbackClientId(REDIRECT, SCOPE)

/** The same request to both servers (each with its own fresh DPoP key and nonce). */
const both = async (send: (c: RawClient, t: Target) => Promise<Answer>): Promise<[Answer, Answer]> =>
  Promise.all([ours, ref].map(async (t) => send(new RawClient(t, await newDpopKey()), t))) as Promise<[Answer, Answer]>

const sameError = async (label: string, send: (c: RawClient, t: Target) => Promise<Answer>): Promise<void> => {
  const [a, b] = await both(send)
  expect({ label, status: a.status, error: a.body?.error }).toEqual({ label, status: b.status, error: b.body?.error })
}

describe.skipIf(!HAVE_REFERENCE)('discovery documents', () => {
  test('protected resource metadata: identical (each names itself)', async () => {
    const [a, b] = await Promise.all([getJson(ours, '/.well-known/oauth-protected-resource'), getJson(ref, '/.well-known/oauth-protected-resource')])
    expect(a.status).toBe(200)
    expect(a.type).toContain('application/json')
    expect(a.cors).toBe('*')
    expect(normalise(a.body, ours)).toEqual(normalise(b.body, ref) as Record<string, unknown>)
  })

  test('authorization server metadata: the same fields and values, except what we chose not to offer', async () => {
    const [a, b] = await Promise.all([getJson(ours, '/.well-known/oauth-authorization-server'), getJson(ref, '/.well-known/oauth-authorization-server')])
    expect(a.cors).toBe('*')
    const mine = normalise(a.body, ours) as Record<string, unknown>
    const theirs = normalise(b.body, ref) as Record<string, unknown>
    // Request objects (JAR) are not implemented: not advertised.
    const notOffered = ['request_parameter_supported', 'request_object_signing_alg_values_supported', 'request_object_encryption_alg_values_supported', 'request_object_encryption_enc_values_supported']
    expect(Object.keys(mine).sort()).toEqual(Object.keys(theirs).filter((k) => !notOffered.includes(k)).sort())
    // Subsets, by choice: no ES256K (jose cannot verify it in workerd and Node clients would pick it),
    // no form_post (no script on our pages), no account selection or creation (one account, made by setup).
    const subsets: Record<string, string[]> = {
      dpop_signing_alg_values_supported: ['ES256K'],
      token_endpoint_auth_signing_alg_values_supported: ['ES256K'],
      response_modes_supported: ['form_post'],
      prompt_values_supported: ['select_account', 'create'],
    }
    for (const [key, value] of Object.entries(mine)) {
      if (subsets[key]) {
        expect({ key, value }).toEqual({ key, value: (theirs[key] as string[]).filter((v) => !subsets[key].includes(v)) })
      } else {
        expect({ key, value }).toEqual({ key, value: theirs[key] })
      }
    }
  })
})

describe.skipIf(!HAVE_REFERENCE)('PAR', () => {
  const par = (c: RawClient, overrides: Record<string, string> = {}) =>
    c.par({ client_id: CLIENT_ID, redirect_uri: REDIRECT, scope: SCOPE, code_challenge: pkce().challenge, ...overrides })

  test('success: 201 with a request_uri and expires_in 299, a DPoP-Nonce, no-store', async () => {
    const [a, b] = await both((c) => par(c))
    // Ours answers 299. The reference answers floor((expiry - now) / 1000) for a 300 s expiry: 299 once a
    // millisecond has passed since it set the expiry, 300 if none has (seen in CI).
    expect(a.body?.expires_in).toBe(299)
    expect([299, 300]).toContain(b.body?.expires_in)
    for (const res of [a, b]) {
      expect(res.status).toBe(201)
      expect(res.body?.request_uri).toMatch(/^urn:ietf:params:oauth:request_uri:req-[0-9a-f]{32}$/)
      expect(res.headers.get('dpop-nonce')).toBeTruthy()
      expect(res.headers.get('cache-control')).toBe('no-store')
    }
  })

  test('refusals have the reference\'s status and code', async () => {
    await sameError('no nonce', (c) => c.post('/oauth/par', { client_id: CLIENT_ID, response_type: 'code', redirect_uri: REDIRECT, scope: SCOPE, code_challenge: pkce().challenge, code_challenge_method: 'S256', state: 'x' }, { retryNonce: false }))
    await sameError('plain PKCE', (c) => par(c, { code_challenge_method: 'plain' }))
    await sameError('no code_challenge', (c) => c.post('/oauth/par', { client_id: CLIENT_ID, response_type: 'code', redirect_uri: REDIRECT, scope: SCOPE, state: 'x' }))
    await sameError('undeclared scope', (c) => par(c, { scope: 'atproto transition:chat.bsky' }))
    await sameError('no atproto scope', (c) => par(c, { scope: 'transition:generic' }))
    await sameError('unregistered redirect_uri', (c) => par(c, { redirect_uri: 'http://127.0.0.1/elsewhere' }))
    await sameError('response_type token', (c) => par(c, { response_type: 'token' }))
    await sameError('invalid client_id', (c) => par(c, { client_id: 'not a url' }))
  }, 30_000)
})

describe.skipIf(!HAVE_REFERENCE)('token endpoint error codes', () => {
  const token = (c: RawClient, form: Record<string, string>, opts: { proof?: null; retryNonce?: boolean } = {}) =>
    c.post('/oauth/token', { client_id: CLIENT_ID, ...form }, opts)
  const codeGrant = { grant_type: 'authorization_code', code: `cod-${randomBytes(32).toString('hex')}`, redirect_uri: REDIRECT, code_verifier: pkce().verifier }

  test('each malformed or unknown grant is answered with the same status and error', async () => {
    await sameError('no DPoP proof', (c) => token(c, codeGrant, { proof: null }))
    await sameError('no nonce', (c) => token(c, codeGrant, { retryNonce: false }))
    await sameError('unknown code', (c) => token(c, codeGrant))
    await sameError('malformed code', (c) => token(c, { ...codeGrant, code: 'abc' }))
    await sameError('no redirect_uri', (c) => token(c, { grant_type: 'authorization_code', code: codeGrant.code, code_verifier: codeGrant.code_verifier }))
    await sameError('short code_verifier', (c) => token(c, { ...codeGrant, code_verifier: 'short' }))
    await sameError('unknown refresh token', (c) => token(c, { grant_type: 'refresh_token', refresh_token: `ref-${randomBytes(32).toString('hex')}` }))
    await sameError('unsupported grant', (c) => token(c, { grant_type: 'client_credentials' }))
    await sameError('no client_id', (c) => c.post('/oauth/token', codeGrant))
  }, 30_000)

  test('revocation of an unknown token: 200 on both', async () => {
    const [a, b] = await both((c) => c.post('/oauth/revoke', { client_id: CLIENT_ID, token: `ref-${randomBytes(32).toString('hex')}` }))
    expect([a.status, b.status]).toEqual([200, 200])
  })
})

describe.skipIf(!HAVE_REFERENCE)('resource server', () => {
  test('an unknown access token with a good proof: 401 with an invalid_token DPoP challenge on both', async () => {
    for (const t of [ours, ref]) {
      const c = new RawClient(t, await newDpopKey())
      const bogus = t === ours ? `tok-${randomBytes(32).toString('hex')}` : 'eyJhbGciOiJIUzI1NiJ9.e30.c2ln'
      const res = await c.xrpc('GET', 'com.atproto.server.getSession', bogus)
      expect({ server: t === ours ? 'ours' : 'ref', status: res.status }).toEqual({ server: t === ours ? 'ours' : 'ref', status: 401 })
      expect(res.headers.get('www-authenticate')).toMatch(/^DPoP .*error="invalid_token"/)
      expect(res.headers.get('dpop-nonce')).toBeTruthy()
    }
  })

  test('a proof without a nonce: 401 with a use_dpop_nonce challenge on both', async () => {
    for (const t of [ours, ref]) {
      const c = new RawClient(t, await newDpopKey())
      const accessToken = `tok-${randomBytes(32).toString('hex')}`
      const proof = await dpopProof(c.key, { method: 'GET', htu: `${t.publicUrl}/xrpc/com.atproto.server.getSession`, accessToken })
      const res = await c.xrpc('GET', 'com.atproto.server.getSession', accessToken, { proof })
      expect(res.status).toBe(401)
      expect(res.headers.get('www-authenticate')).toMatch(/^DPoP .*error="use_dpop_nonce"/)
    }
  })
})
