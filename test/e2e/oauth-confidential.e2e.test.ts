/**
 * A confidential web app (`private_key_jwt`, its key at `jwks_uri`) signing
 * in with `@atproto/oauth-client-node`, whose scope includes a permission set
 * published the Lexicon way (`_lexicon` DNS TXT → did:plc → its PDS → a signed
 * `com.atproto.lexicon.schema` record). Everything the PDS fetches comes from
 * a loopback stand-in for the internet (PDS_DEV_LOOPBACK_ORIGIN), after the
 * production checks. Also: what the granted scope refuses (another
 * collection, another blob type, an ungranted service), the client's key
 * checked again at every refresh, and clear errors (JSON at PAR, a page in
 * the browser, never a 500) for unreachable, unsafe and invalid metadata and
 * for a permission set that does not resolve.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import { JoseKey, type OAuthSession } from '@atproto/oauth-client-node'
import { concatBytes, getRecords, MemoryBlockstore, Repo, WriteOpAction } from '@atproto/repo'
import { exportJWK, generateKeyPair } from 'jose'
import type { Browser, BrowserContext } from 'playwright-core'
import { type PdsProcess, REPO_ROOT } from './harness'
import { json, PUBLIC_IP, startInternetStub } from './helpers/internet-stub'
import { confidentialClient, launchChromium, screenshots, signIn, storedSession, type TestClient } from './helpers/oauth-client'
import { ASSERTION_TYPE, clientAssertion, loopbackClientId, pkce, RawClient, newDpopKey } from './helpers/oauth-raw'
import { usePds } from './use-pds'

const SHOTS = join(REPO_ROOT, '.tmp')
const CLIENT_HOST = 'app.example.net'
const CLIENT_ID = `https://${CLIENT_HOST}/client-metadata.json`
const SET_NSID = 'net.example.app.authFull'
const SET_AUD = 'did:web:api.example.net#svc'
const LEXICON_DID = 'did:plc:exampleapplexicons234567'
const LEXICON_PDS = 'lexpds.example.net'
const SCOPE = `atproto include:${SET_NSID}?aud=${encodeURIComponent(SET_AUD)} blob:image/*`

const internet = await startInternetStub()
let pds: PdsProcess
let browser: Browser
let owner: BrowserContext
let app: TestClient
let session: OAuthSession
let appKey: JoseKey
/** What the app's jwks_uri serves (tests rotate keys into it). */
let publishedKeys: object[]

usePds(
  (started) => {
    pds = started
  },
  { vars: { PDS_DEV_LOOPBACK_ORIGIN: internet.url, PLC_URL: internet.url } },
)

const metadata = (overrides: Record<string, unknown> = {}) => ({
  client_id: CLIENT_ID,
  client_name: 'Example App',
  client_uri: `https://${CLIENT_HOST}`,
  logo_uri: `https://${CLIENT_HOST}/logo.svg`,
  redirect_uris: [`https://${CLIENT_HOST}/callback`],
  scope: SCOPE,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'private_key_jwt',
  token_endpoint_auth_signing_alg: 'ES256',
  jwks_uri: `https://${CLIENT_HOST}/jwks.json`,
  application_type: 'web',
  dpop_bound_access_tokens: true,
  ...overrides,
})

/** The permission set, as its publisher's repo holds it. */
const PERMISSION_SET = {
  $type: 'com.atproto.lexicon.schema',
  lexicon: 1,
  id: SET_NSID,
  defs: {
    main: {
      type: 'permission-set',
      title: 'Example App',
      detail: 'Post to Example App and read its feeds.',
      permissions: [
        { type: 'permission', resource: 'repo', collection: ['net.example.app.post'] },
        { type: 'permission', resource: 'rpc', lxm: ['net.example.app.getThing'], inheritAud: true },
        // Outside the set's namespace, and an unknown kind: both ignored.
        { type: 'permission', resource: 'repo', collection: ['app.bsky.feed.post'] },
        { type: 'permission', resource: 'frobnicate', what: 'ever' },
      ],
    },
  },
}

/** Publishes the permission set: DNS TXT, the DID document in "PLC", and the signed record at its PDS. */
const publishPermissionSet = async (): Promise<void> => {
  const keypair = await Secp256k1Keypair.create()
  const storage = new MemoryBlockstore()
  const repo = await Repo.create(storage, LEXICON_DID, keypair, [
    { action: WriteOpAction.Create, collection: 'com.atproto.lexicon.schema', rkey: SET_NSID, record: PERMISSION_SET },
  ])
  const chunks: Uint8Array[] = []
  for await (const chunk of getRecords(storage, repo.cid, [{ collection: 'com.atproto.lexicon.schema', rkey: SET_NSID }])) chunks.push(chunk)
  const car = concatBytes(chunks)
  internet.dns.set(`_lexicon.${CLIENT_HOST}`, { 16: [`did=${LEXICON_DID}`] })
  internet.plc.set(LEXICON_DID, {
    id: LEXICON_DID,
    alsoKnownAs: [`at://${LEXICON_PDS}`],
    verificationMethod: [{ id: `${LEXICON_DID}#atproto`, type: 'Multikey', controller: LEXICON_DID, publicKeyMultibase: keypair.did().slice('did:key:'.length) }],
    service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: `https://${LEXICON_PDS}` }],
  })
  internet.dns.set(LEXICON_PDS, { 1: [PUBLIC_IP] })
  internet.sites.set(LEXICON_PDS, (_req, url) =>
    url.pathname === '/xrpc/com.atproto.sync.getRecord' && url.searchParams.get('rkey') === SET_NSID
      ? new Response(car, { headers: { 'content-type': 'application/vnd.ipld.car' } })
      : json({ error: 'RecordNotFound' }, { status: 400 }),
  )
}

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true })
  await publishPermissionSet()
  appKey = await JoseKey.generate(['ES256'], 'key-1')
  publishedKeys = [appKey.publicJwk as object]
  internet.dns.set(CLIENT_HOST, { 1: [PUBLIC_IP] })
  internet.sites.set(CLIENT_HOST, (_req, url) => {
    if (url.pathname === '/client-metadata.json') return json(metadata())
    if (url.pathname === '/jwks.json') return json({ keys: publishedKeys })
    return new Response('not found', { status: 404 })
  })
  app = confidentialClient(pds, { metadata: metadata(), keys: [appKey] })
  browser = await launchChromium()
  owner = await browser.newContext()
})

afterAll(async () => {
  await browser?.close()
  internet.stop()
})

const call = async (s: OAuthSession, nsid: string, init: RequestInit = {}) => {
  const res = await s.fetchHandler(`/xrpc/${nsid}`, init)
  return { status: res.status, body: (await res.json().catch(() => null)) as Record<string, any> }
}
const postJson = (body: unknown): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
const record = (collection: string) => ({ repo: pds.did, collection, record: { $type: collection, text: 'hi', createdAt: new Date().toISOString() } })

describe('a confidential client with a permission set', () => {
  test('signs in: the consent page names the app and explains the set; the token carries the expanded permissions', async () => {
    const result = await signIn(app, owner, pds.handle, {
      password: pds.password,
      onPage: async (name, page) => {
        if (name !== 'consent') return
        const text = await page.locator('.card').innerText()
        expect(text).toContain('Example App')
        expect(text).toContain('app.example.net')
        expect(text).toContain('Post to Example App and read its feeds.')
        expect(text).toContain('net.example.app.post')
        expect(text).toContain('Upload images')
        expect(await page.locator('.app img').getAttribute('src')).toBe(`https://${CLIENT_HOST}/logo.svg`)
        await screenshots(page, SHOTS, 'oauth-consent-confidential')
      },
    })
    session = result.session
    const info = await session.getTokenInfo()
    const granted = info.scope.split(' ')
    expect(granted).toContain('repo:net.example.app.post')
    expect(granted).toContain(`rpc:net.example.app.getThing?aud=${SET_AUD.replace('#', '%23')}`)
    expect(granted).not.toContain('repo:app.bsky.feed.post')
    expect(granted.some((s) => s.startsWith('include:'))).toBe(false)
    // The client authenticated with its key: the PDS fetched its JWKS (and its metadata) through the loopback internet.
    expect(internet.requests).toContain(`${CLIENT_HOST} /jwks.json`)
    expect(internet.requests).toContain(`${CLIENT_HOST} /client-metadata.json`)
    expect(internet.requests.some((r) => r.startsWith(`${LEXICON_PDS} /xrpc/com.atproto.sync.getRecord`))).toBe(true)
  }, 90_000)

  test('the scope decides: its collection yes, another collection, another blob type, an ungranted service no (403 Missing required scope)', async () => {
    expect((await call(session, 'com.atproto.repo.createRecord', postJson(record('net.example.app.post')))).status).toBe(200)
    const otherCollection = await call(session, 'com.atproto.repo.createRecord', postJson(record('app.bsky.feed.post')))
    expect(otherCollection).toEqual({ status: 403, body: { error: 'ScopeMissingError', message: 'Missing required scope "repo:app.bsky.feed.post?action=create"' } })
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0])
    expect((await call(session, 'com.atproto.repo.uploadBlob', { method: 'POST', headers: { 'content-type': 'image/png' }, body: png })).status).toBe(200)
    const video = await call(session, 'com.atproto.repo.uploadBlob', { method: 'POST', headers: { 'content-type': 'video/mp4' }, body: new Uint8Array(16) })
    expect(video).toEqual({ status: 403, body: { error: 'ScopeMissingError', message: 'Missing required scope "blob:video/mp4"' } })
    const timeline = await call(session, 'app.bsky.feed.getTimeline')
    expect(timeline.status).toBe(403)
    expect(timeline.body.message).toBe('Missing required scope "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview"')
    const serviceAuth = await call(session, `com.atproto.server.getServiceAuth?${new URLSearchParams({ aud: 'did:web:api.bsky.app#bsky_appview', lxm: 'app.bsky.feed.getTimeline' })}`)
    expect(serviceAuth.status).toBe(403)
    // Never for OAuth, whatever the scope.
    expect(await call(session, 'com.atproto.server.createAppPassword', postJson({ name: 'sneaky' }))).toEqual({
      status: 403,
      body: { error: 'Forbidden', message: 'OAuth credentials are not supported for this endpoint' },
    })
  }, 60_000)

  test('refresh authenticates the client again: it works with its key, not without an assertion, and a different key ends the session', async () => {
    await session.getTokenInfo(true)
    expect((await call(session, 'com.atproto.server.getSession')).status).toBe(200)
    const stored = await storedSession(app, pds.did)
    const raw = new RawClient(pds, stored.key)
    const noAssertion = await raw.post('/oauth/token', { grant_type: 'refresh_token', refresh_token: stored.refreshToken as string, client_id: CLIENT_ID })
    expect(noAssertion.status).toBe(400)
    expect(noAssertion.body?.error).toBe('invalid_request')
    // The app publishes a second key and signs with it: not the key the session was bound to.
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
    publishedKeys = [...publishedKeys, { ...(await exportJWK(publicKey)), kid: 'key-2', alg: 'ES256', use: 'sig' }]
    const otherKey = await raw.post('/oauth/token', {
      grant_type: 'refresh_token',
      refresh_token: stored.refreshToken as string,
      client_id: CLIENT_ID,
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: await clientAssertion({ privateKey, kid: 'key-2' }, CLIENT_ID, pds.publicUrl),
    })
    expect(otherKey.status).toBe(400)
    expect(otherKey.body?.error).toBe('invalid_grant')
    expect((await raw.xrpc('GET', 'com.atproto.server.getSession', stored.accessToken)).status).toBe(401)
  }, 60_000)
})

describe('clients that cannot sign in get a clear error, never a 500', () => {
  const parFor = async (clientId: string, scope = 'atproto') => {
    const raw = new RawClient(pds, await newDpopKey())
    const { challenge } = pkce()
    return raw.par({ client_id: clientId, redirect_uri: `https://${new URL(clientId).host}/callback`, scope, code_challenge: challenge })
  }
  const site = (host: string, respond: () => Response, address = PUBLIC_IP) => {
    internet.dns.set(host, { 1: [address] })
    internet.sites.set(host, respond)
    return `https://${host}/client-metadata.json`
  }

  test('unreachable, unsafe, redirected, oversized, wrongly typed or invalid metadata: 400 invalid_client_metadata at PAR', async () => {
    const good = (host: string) => metadata({ client_id: `https://${host}/client-metadata.json`, client_uri: `https://${host}`, logo_uri: undefined, redirect_uris: [`https://${host}/callback`], jwks_uri: undefined, token_endpoint_auth_method: 'none', token_endpoint_auth_signing_alg: undefined, scope: 'atproto' })
    const cases: [string, RegExp][] = [
      ['https://gone.example.net/client-metadata.json', /does not resolve/],
      [site('internal.example.net', () => json(good('internal.example.net')), '10.0.0.5'), /non-public address/],
      [site('moved.example.net', () => new Response(null, { status: 302, headers: { location: 'https://elsewhere.example.net/' } })), /redirects are not followed/],
      [site('huge.example.net', () => json({ ...good('huge.example.net'), padding: 'x'.repeat(300 * 1024) })), /larger than/],
      [site('html.example.net', () => new Response('<html></html>', { headers: { 'content-type': 'text/html' } })), /content type/],
      [site('down.example.net', () => new Response('oops', { status: 503 })), /HTTP 503/],
      [site('nodpop.example.net', () => json({ ...good('nodpop.example.net'), dpop_bound_access_tokens: false })), /dpop_bound_access_tokens must be true/],
    ]
    for (const [clientId, message] of cases) {
      const res = await parFor(clientId)
      expect({ clientId, status: res.status, error: res.body?.error }).toEqual({ clientId, status: 400, error: 'invalid_client_metadata' })
      expect(res.body?.error_description).toMatch(message)
    }
    // The unsafe host was never fetched: refused on its DNS answer.
    expect(internet.requests.some((r) => r.startsWith('internal.example.net'))).toBe(false)
  }, 60_000)

  test('an unresolvable permission set is invalid_scope at PAR, naming it', async () => {
    const redirect = 'http://127.0.0.1/callback'
    const scope = 'atproto include:net.nowhere.app.authFull'
    const raw = new RawClient(pds, await newDpopKey())
    const res = await raw.par({ client_id: loopbackClientId(redirect, scope), redirect_uri: redirect, scope, code_challenge: pkce().challenge })
    expect(res.status).toBe(400)
    expect(res.body?.error).toBe('invalid_scope')
    expect(res.body?.error_description).toContain('net.nowhere.app.authFull')
  }, 30_000)

  test('in the browser, an unusable client gets an error page', async () => {
    const page = await owner.newPage()
    const res = await page.goto(`${pds.publicUrl}/oauth/authorize?${new URLSearchParams({ client_id: 'https://gone.example.net/client-metadata.json', request_uri: `urn:ietf:params:oauth:request_uri:req-${'0'.repeat(32)}` })}`)
    expect(res?.status()).toBe(400)
    expect(await page.locator('[data-field="error-title"]').innerText()).toBe('This app cannot sign in')
    expect(await page.locator('[data-field="error-message"]').innerText()).toContain('does not resolve')
    await screenshots(page, SHOTS, 'oauth-error')
    await page.close()
  }, 30_000)
})
