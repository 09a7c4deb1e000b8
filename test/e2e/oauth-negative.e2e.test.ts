/**
 * What the authorization and resource servers refuse, request by request,
 * with hand-made DPoP proofs and the real HTML forms: wrong PKCE verifier,
 * reused code (which also ends the session it made), reused code_challenge,
 * replayed DPoP proof, another DPoP key, missing or unknown nonce, tokens after
 * revocation, a replayed refresh token, scopes that do not allow a call, the
 * deny button, a link preview fetching the authorization page, forged forms,
 * and the sign-in rate limit. Codes and statuses are the reference
 * provider's (src/oauth/errors.ts says why they matter to clients).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { randomBytes } from 'node:crypto'
import type { PdsProcess } from './harness'
import { json, startInternetStub } from './helpers/internet-stub'
import { Browserless, decideByForms, dpopProof, loopbackClientId, newDpopKey, pkce, RawClient } from './helpers/oauth-raw'
import { usePds } from './use-pds'

const REDIRECT = 'http://127.0.0.1/callback'
const CHAT_DID = 'did:plc:chatservicechatservice23'

const internet = await startInternetStub()
let pds: PdsProcess

usePds(
  (started) => {
    pds = started
  },
  { vars: { PDS_DEV_LOOPBACK_ORIGIN: internet.url, PLC_URL: internet.url } },
)

beforeAll(() => {
  // A chat service the forwarding can resolve (its DID document); nothing should ever reach it.
  internet.plc.set(CHAT_DID, { id: CHAT_DID, service: [{ id: '#bsky_chat', type: 'BskyChatService', serviceEndpoint: `${internet.url}/chat` }] })
})

afterAll(() => internet.stop())

interface Flow {
  raw: RawClient
  clientId: string
  verifier: string
  challenge: string
  requestUri: string
  state: string
}

/** PAR for a loopback client with `scope`; the request is not yet approved. */
const push = async (scope = 'atproto transition:generic', opts: { challenge?: { verifier: string; challenge: string }; raw?: RawClient } = {}): Promise<Flow> => {
  const raw = opts.raw ?? new RawClient(pds, await newDpopKey())
  const clientId = loopbackClientId(REDIRECT, scope)
  const { verifier, challenge } = opts.challenge ?? pkce()
  const state = randomBytes(8).toString('hex')
  const res = await raw.par({ client_id: clientId, redirect_uri: REDIRECT, scope, code_challenge: challenge, state })
  if (res.status !== 201) throw new Error(`PAR: ${res.status} ${res.text}`)
  return { raw, clientId, verifier, challenge, requestUri: res.body?.request_uri, state }
}

/** The owner approves through the forms; returns the code from the redirect. */
const approve = async (flow: Flow, owner = new Browserless(pds)): Promise<string> => {
  const location = new URL(await decideByForms(owner, flow.clientId, flow.requestUri, pds.password))
  expect(location.searchParams.get('state')).toBe(flow.state)
  return location.searchParams.get('code') as string
}

const exchange = (flow: Flow, code: string, verifier = flow.verifier, raw = flow.raw) =>
  raw.post('/oauth/token', { grant_type: 'authorization_code', client_id: flow.clientId, redirect_uri: REDIRECT, code, code_verifier: verifier })

/** A full sign-in: tokens and the client that holds their DPoP key. */
const signedIn = async (scope?: string) => {
  const flow = await push(scope)
  const tokens = await exchange(flow, await approve(flow))
  expect(tokens.status).toBe(200)
  return { flow, raw: flow.raw, access: tokens.body?.access_token as string, refresh: tokens.body?.refresh_token as string }
}

const getSession = (raw: RawClient, token: string) => raw.xrpc('GET', 'com.atproto.server.getSession', token)

describe('codes and PKCE', () => {
  test('a wrong code_verifier is invalid_grant, and the code is spent', async () => {
    const flow = await push()
    const code = await approve(flow)
    const wrong = await exchange(flow, code, pkce().verifier)
    expect(wrong.status).toBe(400)
    expect(wrong.body).toEqual({ error: 'invalid_grant', error_description: 'Invalid code_verifier' })
    expect((await exchange(flow, code)).body?.error).toBe('invalid_grant')
  })

  test('a code used twice: refused, and the session the first use made ends', async () => {
    const flow = await push()
    const code = await approve(flow)
    const first = await exchange(flow, code)
    expect(first.status).toBe(200)
    expect((await getSession(flow.raw, first.body?.access_token)).status).toBe(200)
    const again = await exchange(flow, code)
    expect(again.body).toEqual({ error: 'invalid_grant', error_description: 'Invalid code' })
    expect((await getSession(flow.raw, first.body?.access_token)).status).toBe(401)
  })

  test('a code_challenge is never accepted twice', async () => {
    const used = pkce()
    const flow = await push(undefined, { challenge: used })
    // A second request with the same challenge, pushed before the first is redeemed.
    const twin = await push(undefined, { challenge: used })
    expect((await exchange(flow, await approve(flow))).status).toBe(200)
    const late = await exchange(twin, await approve(twin))
    expect(late.body).toEqual({ error: 'invalid_grant', error_description: 'Code challenge already used' })
    // And once used, no new request may start with it.
    const raw = new RawClient(pds, await newDpopKey())
    const pushed = await raw.par({ client_id: loopbackClientId(REDIRECT, 'atproto'), redirect_uri: REDIRECT, scope: 'atproto', code_challenge: used.challenge })
    expect(pushed.status).toBe(400)
    expect(pushed.body?.error_description).toContain('already used')
  })

  test('PAR refuses what atproto forbids: plain PKCE, no state, an unregistered redirect, an undeclared scope, another account', async () => {
    const raw = new RawClient(pds, await newDpopKey())
    const clientId = loopbackClientId(REDIRECT, 'atproto')
    const base = { client_id: clientId, redirect_uri: REDIRECT, scope: 'atproto', code_challenge: pkce().challenge }
    const cases: [Record<string, string>, string, RegExp][] = [
      [{ code_challenge_method: 'plain' }, 'invalid_request', /S256/],
      [{ code_challenge: '' }, 'invalid_request', /PKCE/],
      [{ state: '' }, 'invalid_request', /state/],
      [{ redirect_uri: 'http://127.0.0.1/elsewhere' }, 'invalid_request', /redirect_uri/],
      [{ scope: 'atproto transition:generic' }, 'invalid_scope', /not declared/],
      [{ login_hint: 'bob.example.com' }, 'invalid_request', /hosts only/],
      [{ response_mode: 'form_post' }, 'invalid_request', /form_post/],
    ]
    for (const [override, error, message] of cases) {
      const res = await raw.par({ ...base, ...override })
      expect({ override, status: res.status, error: res.body?.error }).toEqual({ override, status: 400, error })
      expect(res.body?.error_description).toMatch(message)
    }
  })
})

describe('DPoP', () => {
  test('PAR and token need a proof; a missing nonce is use_dpop_nonce (400) with a fresh DPoP-Nonce', async () => {
    const raw = new RawClient(pds, await newDpopKey())
    const form = { client_id: loopbackClientId(REDIRECT, 'atproto'), redirect_uri: REDIRECT, scope: 'atproto', code_challenge: pkce().challenge, response_type: 'code', code_challenge_method: 'S256', state: 's' }
    const none = await raw.post('/oauth/par', form, { proof: null })
    expect(none.status).toBe(401)
    expect(none.body?.error).toBe('invalid_dpop_proof')
    expect(none.headers.get('www-authenticate')).toMatch(/^DPoP .*error="invalid_dpop_proof"/)
    raw.nonce = null
    const noNonce = await raw.post('/oauth/par', form, { retryNonce: false })
    expect(noNonce.status).toBe(400)
    expect(noNonce.body).toEqual({ error: 'use_dpop_nonce', error_description: 'Authorization server requires nonce in DPoP proof' })
    expect(noNonce.headers.get('dpop-nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(noNonce.headers.get('cache-control')).toBe('no-store')
    const fabricated = 'a-nonce-this-server-never-issued-or-one-long-expired'
    raw.nonce = fabricated
    const stale = await raw.post('/oauth/par', form, { retryNonce: false })
    expect(stale.body).toEqual({ error: 'use_dpop_nonce', error_description: 'DPoP "nonce" mismatch' })
    // Clients retry only when the header differs from what they sent.
    expect(stale.headers.get('dpop-nonce')).not.toBe(fabricated)
  })

  test('a proof is used once: replaying it at the token endpoint or the resource server is refused', async () => {
    const { raw, access } = await signedIn()
    const htu = `${pds.publicUrl}/xrpc/com.atproto.server.getSession`
    const proof = await dpopProof(raw.key, { method: 'GET', htu, nonce: raw.nonce, accessToken: access })
    expect((await raw.xrpc('GET', 'com.atproto.server.getSession', access, { proof })).status).toBe(200)
    const replay = await raw.xrpc('GET', 'com.atproto.server.getSession', access, { proof })
    expect(replay.status).toBe(401)
    expect(replay.body).toEqual({ error: 'invalid_dpop_proof', message: 'DPoP proof replayed' })
    const flow = await push()
    const tokenProof = await dpopProof(flow.raw.key, { method: 'POST', htu: `${pds.publicUrl}/oauth/token`, nonce: flow.raw.nonce })
    const code = await approve(flow)
    const form = { grant_type: 'authorization_code', client_id: flow.clientId, redirect_uri: REDIRECT, code, code_verifier: flow.verifier }
    expect((await flow.raw.post('/oauth/token', form, { proof: tokenProof })).status).toBe(200)
    expect((await flow.raw.post('/oauth/token', form, { proof: tokenProof })).body?.error_description).toBe('DPoP proof replayed')
  })

  test('tokens are bound to the key: another key at the token endpoint or the resource server is refused', async () => {
    const flow = await push()
    const code = await approve(flow)
    const thief = new RawClient(pds, await newDpopKey())
    const stolen = await exchange(flow, code, flow.verifier, thief)
    expect(stolen.body).toEqual({ error: 'invalid_grant', error_description: 'DPoP proof does not match the expected JKT' })
    const { raw, access, refresh } = await signedIn()
    const other = new RawClient(pds, await newDpopKey())
    const res = await getSession(other, access)
    expect(res.status).toBe(401)
    expect(res.body?.error).toBe('invalid_token')
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"')
    // A refresh with another key ends the session (the token is in the wrong hands).
    const refreshed = await other.post('/oauth/token', { grant_type: 'refresh_token', client_id: loopbackClientId(REDIRECT, 'atproto transition:generic'), refresh_token: refresh })
    expect(refreshed.body?.error).toBe('invalid_grant')
    expect((await getSession(raw, access)).status).toBe(401)
  })

  test('at the resource server: no nonce is a 401 use_dpop_nonce challenge with a new nonce; no proof, or a Bearer scheme, is refused', async () => {
    const { raw, access } = await signedIn()
    const htu = `${pds.publicUrl}/xrpc/com.atproto.server.getSession`
    const res = await raw.xrpc('GET', 'com.atproto.server.getSession', access, { proof: await dpopProof(raw.key, { method: 'GET', htu, accessToken: access }) })
    expect(res.status).toBe(401)
    expect(res.body?.error).toBe('use_dpop_nonce')
    expect(res.headers.get('www-authenticate')).toMatch(/^DPoP .*error="use_dpop_nonce"/)
    expect(res.headers.get('dpop-nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(res.headers.get('access-control-expose-headers')?.toLowerCase()).toContain('dpop-nonce')
    const noProof = await fetch(`${pds.url}/xrpc/com.atproto.server.getSession`, { headers: { authorization: `DPoP ${access}` } })
    expect(noProof.status).toBe(401)
    expect(((await noProof.json()) as { error: string }).error).toBe('invalid_dpop_proof')
    const bearer = await fetch(`${pds.url}/xrpc/com.atproto.server.getSession`, { headers: { authorization: `Bearer ${access}` } })
    expect(bearer.status).toBe(400)
  })
})

describe('refresh and revocation', () => {
  test('a refresh token works once; presenting the old one again ends the session', async () => {
    const { raw, flow, refresh } = await signedIn()
    const form = (token: string) => ({ grant_type: 'refresh_token', client_id: flow.clientId, refresh_token: token })
    const next = await raw.post('/oauth/token', form(refresh))
    expect(next.status).toBe(200)
    expect(next.body?.refresh_token).not.toBe(refresh)
    expect((await getSession(raw, next.body?.access_token)).status).toBe(200)
    const replay = await raw.post('/oauth/token', form(refresh))
    expect(replay.body).toEqual({ error: 'invalid_grant', error_description: 'Refresh token replayed' })
    expect((await getSession(raw, next.body?.access_token)).status).toBe(401)
    expect((await raw.post('/oauth/token', form(next.body?.refresh_token))).body?.error).toBe('invalid_grant')
  })

  test('after revocation (RFC 7009) neither token works; revoke itself always answers 200', async () => {
    const { raw, flow, access, refresh } = await signedIn()
    const revoked = await raw.post('/oauth/revoke', { client_id: flow.clientId, token: refresh })
    expect(revoked.status).toBe(200)
    expect(revoked.body).toEqual({})
    const after = await getSession(raw, access)
    expect(after.status).toBe(401)
    expect(after.headers.get('www-authenticate')).toContain('error="invalid_token"')
    expect((await raw.post('/oauth/token', { grant_type: 'refresh_token', client_id: flow.clientId, refresh_token: refresh })).body?.error).toBe('invalid_grant')
    expect((await raw.post('/oauth/revoke', { client_id: flow.clientId, token: 'ref-nonsense' })).status).toBe(200)
  })
})

describe('scopes', () => {
  test('repo: a collection and action; blob: a type; rpc: a method at a service; chat needs transition:chat.bsky', async () => {
    const { raw, access } = await signedIn('atproto repo:app.bsky.feed.post?action=create blob:image/*')
    const create = (collection: string) => raw.xrpc('POST', 'com.atproto.repo.createRecord', access, { body: { repo: pds.did, collection, record: { $type: collection, text: 'x', createdAt: new Date().toISOString() } } })
    expect((await create('app.bsky.feed.post')).status).toBe(200)
    expect((await create('app.bsky.feed.like')).body).toEqual({ error: 'ScopeMissingError', message: 'Missing required scope "repo:app.bsky.feed.like?action=create"' })
    const put = await raw.xrpc('POST', 'com.atproto.repo.putRecord', access, { body: { repo: pds.did, collection: 'app.bsky.feed.post', rkey: 'self', record: { $type: 'app.bsky.feed.post', text: 'x', createdAt: new Date().toISOString() } } })
    expect(put.body?.message).toBe('Missing required scope "repo:app.bsky.feed.post?action=update"')
    const gif = await raw.xrpc('POST', 'com.atproto.repo.uploadBlob', access, { body: new Uint8Array([0x47, 0x49, 0x46, 0x38, 0x39, 0x61]), contentType: 'image/gif' })
    expect(gif.status).toBe(200)
    const audio = await raw.xrpc('POST', 'com.atproto.repo.uploadBlob', access, { body: new Uint8Array(8), contentType: 'audio/mpeg' })
    expect(audio.body?.message).toBe('Missing required scope "blob:audio/mpeg"')
    const generic = await signedIn('atproto transition:generic')
    const chat = await generic.raw.xrpc('GET', 'chat.bsky.convo.listConvos', generic.access, { headers: { 'atproto-proxy': `${CHAT_DID}#bsky_chat` } })
    expect(chat.status).toBe(403)
    expect(chat.body?.message).toBe(`Missing required scope "rpc:chat.bsky.convo.listConvos?aud=${CHAT_DID}%23bsky_chat"`)
    expect(internet.requests.filter((r) => r.includes('/chat'))).toEqual([])
  })
})

describe('the authorization pages', () => {
  test('a link preview GETting the page burns nothing; the owner then approves as usual', async () => {
    const flow = await push()
    const path = `/oauth/authorize?${new URLSearchParams({ client_id: flow.clientId, request_uri: flow.requestUri })}`
    for (const agent of ['Slackbot-LinkExpanding 1.0', 'facebookexternalhit/1.1', 'Twitterbot/1.0']) {
      const res = await fetch(`${pds.url}${path}`, { headers: { 'user-agent': agent } })
      expect(res.status).toBe(200)
      expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'")
      expect(res.headers.get('x-frame-options')).toBe('DENY')
      expect(res.headers.get('cache-control')).toBe('no-store')
      await res.text()
    }
    const code = await approve(flow)
    // Approved: the page now says so (and approving again is impossible); once exchanged, the request is gone.
    const again = await new Browserless(pds).get(path)
    expect(again.status).toBe(400)
    expect(again.html).toContain('Already approved')
    expect((await exchange(flow, code)).status).toBe(200)
  })

  test('the deny button sends the app access_denied (with iss and state), and the request is gone', async () => {
    const flow = await push()
    const location = new URL(await decideByForms(new Browserless(pds), flow.clientId, flow.requestUri, pds.password, 'deny'))
    expect(location.origin + location.pathname).toBe(REDIRECT)
    expect(Object.fromEntries(location.searchParams)).toEqual({ iss: pds.publicUrl, state: flow.state, error: 'access_denied', error_description: 'The user rejected the request' })
    const page = await new Browserless(pds).get(`/oauth/authorize?${new URLSearchParams({ client_id: flow.clientId, request_uri: flow.requestUri })}`)
    expect(page.status).toBe(400)
  })

  test('forms need the anti-forgery token and our own origin; a request started in another browser stays there', async () => {
    const flow = await push()
    const owner = new Browserless(pds)
    const page = await owner.get(`/oauth/authorize?${new URLSearchParams({ client_id: flow.clientId, request_uri: flow.requestUri })}`)
    const fields = Browserless.hidden(page.html)
    const forged = await owner.post('/oauth/authorize', { ...fields, csrf: 'x'.repeat(32), action: 'sign-in', password: pds.password })
    expect(forged.status).toBe(403)
    const crossSite = await owner.post('/oauth/authorize', { ...fields, action: 'sign-in', password: pds.password }, { origin: 'https://evil.example.com' })
    expect(crossSite.status).toBe(403)
    const wrongPassword = await owner.post('/oauth/authorize', { ...fields, action: 'sign-in', password: 'not-it' })
    expect(wrongPassword.status).toBe(401)
    expect(wrongPassword.html).toContain('Wrong password')
    // Signed in here: the request is this browser's now.
    expect((await owner.post('/oauth/authorize', { ...fields, action: 'sign-in', password: pds.password })).status).toBe(200)
    const elsewhere = await new Browserless(pds).get(`/oauth/authorize?${new URLSearchParams({ client_id: flow.clientId, request_uri: flow.requestUri })}`)
    expect(elsewhere.status).toBe(400)
    expect(elsewhere.html).toContain('another browser')
  })

  test('sign-in attempts are rate limited like createSession (30 a minute per handle and address)', async () => {
    const flow = await push()
    const owner = new Browserless(pds)
    const page = await owner.get(`/oauth/authorize?${new URLSearchParams({ client_id: flow.clientId, request_uri: flow.requestUri })}`)
    const fields = Browserless.hidden(page.html)
    const statuses: number[] = []
    for (let i = 0; i < 32; i++) statuses.push((await owner.post('/oauth/authorize', { ...fields, action: 'sign-in', password: `wrong-${i}` })).status)
    // Wrong passwords until the budget (which this file's sign-ins also spent) runs out.
    expect(statuses[0]).toBe(401)
    expect(statuses).toContain(429)
    // The same budget as createSession: the password route is limited too now.
    const session = await fetch(`${pds.url}/xrpc/com.atproto.server.createSession`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ identifier: pds.handle, password: pds.password }),
    })
    expect(session.status).toBe(429)
  })
})

test('never a 500: garbage at every OAuth endpoint is a 4xx', async () => {
  const bodies: [string, RequestInit][] = [
    ['/oauth/par', { method: 'POST', body: 'not a form', headers: { 'content-type': 'text/plain' } }],
    ['/oauth/par', { method: 'POST', body: '{"client_id":', headers: { 'content-type': 'application/json' } }],
    ['/oauth/par', { method: 'POST', body: '__proto__=1&client_id=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }],
    ['/oauth/token', { method: 'POST', body: 'grant_type=password&username=a&password=b&client_id=http://localhost', headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: 'garbage' } }],
    ['/oauth/revoke', { method: 'POST', body: '', headers: { 'content-type': 'application/x-www-form-urlencoded' } }],
    ['/oauth/par', { method: 'GET' }],
    ['/oauth/authorize?client_id=%00&request_uri=%00', { method: 'GET' }],
    ['/oauth/authorize', { method: 'POST', body: 'action=approve', headers: { 'content-type': 'application/x-www-form-urlencoded' } }],
  ]
  for (const [path, init] of bodies) {
    const res = await fetch(`${pds.url}${path}`, init)
    expect({ path, status: res.status >= 400 && res.status < 500 }).toEqual({ path, status: true })
    await res.text()
  }
  expect(json).toBeDefined()
})
