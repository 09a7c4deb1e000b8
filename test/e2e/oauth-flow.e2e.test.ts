/**
 * Signing in to an atproto app with this PDS, end to end, as a user would:
 * the official OAuth client library (`@atproto/oauth-client-node`, a loopback
 * development client) resolves the handle, discovers the authorization
 * server, pushes its request with DPoP; real headless Chromium signs in and
 * approves on our pages; the code is exchanged; the session posts and reads
 * back, refreshes (the old access token dies at once), and is revoked from
 * the account page (the next call is refused) or by signing out. Screenshots
 * of the sign-in, consent and account pages at phone and desktop sizes are
 * saved in .tmp/ for a human to look at.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { OAuthSession } from '@atproto/oauth-client-node'
import type { Browser, BrowserContext } from 'playwright-core'
import { freePort, type PdsProcess, REPO_ROOT } from './harness'
import { launchChromium, loopbackClient, screenshots, signIn, storedSession, type TestClient } from './helpers/oauth-client'
import { RawClient } from './helpers/oauth-raw'
import { lineFor } from './helpers/request-log'
import { usePds } from './use-pds'

const SHOTS = join(REPO_ROOT, '.tmp')
const EMAIL = 'alice-oauth@example.com'

let pds: PdsProcess
let browser: Browser
/** The owner's browser: it stays signed in between tests, like a real one. */
let owner: BrowserContext

usePds(
  (started) => {
    pds = started
  },
  { vars: { PDS_EMAIL: EMAIL } },
)

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true })
  browser = await launchChromium()
  owner = await browser.newContext()
})

afterAll(async () => {
  await browser?.close()
})

const call = async (session: OAuthSession, nsid: string, body?: unknown) => {
  const res = await session.fetchHandler(`/xrpc/${nsid}`, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, body: (await res.json().catch(() => null)) as Record<string, any>, headers: res.headers }
}

const post = (text: string) => ({ $type: 'app.bsky.feed.post', text, createdAt: new Date().toISOString() })

let app: TestClient
let session: OAuthSession

test('sign in: handle → discovery → PAR → sign-in and consent in Chromium → code → tokens (screenshots saved)', async () => {
  app = loopbackClient(pds, { scope: 'atproto transition:generic', callbackPort: await freePort() })
  const seen: string[] = []
  const result = await signIn(app, owner, pds.handle, {
    password: pds.password,
    onPage: async (name, page) => {
      seen.push(name)
      const title = await page.locator('h1').first().innerText()
      expect(title.length).toBeGreaterThan(0)
      if (name === 'consent') {
        const perms = await page.locator('[data-field="permissions"]').innerText()
        expect(perms).toContain(`@${pds.handle}`)
        expect(perms).toContain('any kind of record')
        expect(perms).not.toContain('direct messages')
      }
      await screenshots(page, SHOTS, `oauth-${name}`)
      await page.setViewportSize({ width: 1280, height: 900 })
    },
  })
  session = result.session
  expect(seen).toEqual(['sign-in', 'consent'])
  // RFC 9207: the answer names its issuer; the client checked it too.
  expect(result.callback.searchParams.get('iss')).toBe(pds.publicUrl)
  expect(session.did as string).toBe(pds.did)
  const info = await session.getTokenInfo()
  expect(info.scope).toBe('atproto transition:generic')
  expect(new URL(info.aud).origin).toBe(pds.publicUrl)
  // Short-lived access tokens (the spec wants under 30 minutes).
  expect((info.expiresAt?.getTime() ?? Infinity) - Date.now()).toBeLessThanOrEqual(15 * 60 * 1000)
}, 90_000)

test('the session posts and reads back with DPoP; getSession leaves the email out without account:email', async () => {
  const created = await call(session, 'com.atproto.repo.createRecord', { repo: pds.did, collection: 'app.bsky.feed.post', record: post('hello over OAuth') })
  expect(created.status).toBe(200)
  const rkey = created.body.uri.split('/').pop()
  const read = await call(session, `com.atproto.repo.getRecord?${new URLSearchParams({ repo: pds.did, collection: 'app.bsky.feed.post', rkey })}`)
  expect(read.body.value.text).toBe('hello over OAuth')
  const me = await call(session, 'com.atproto.server.getSession')
  expect(me.status).toBe(200)
  expect(me.body.did).toBe(pds.did)
  expect(me.body.handle).toBe(pds.handle)
  expect(me.body.email).toBeUndefined()
  expect(me.body.emailConfirmed).toBeUndefined()
  expect(me.headers.get('dpop-nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/)
  // The owner's password session still sees it (password sessions unchanged).
  const ownerSession = await fetch(`${pds.url}/xrpc/com.atproto.server.createSession`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ identifier: pds.handle, password: pds.password }),
  }).then((r) => r.json() as Promise<{ email?: string }>)
  expect(ownerSession.email).toBe(EMAIL)
}, 60_000)

test('what an OAuth call costs: one D1 round trip (the proof\'s one-time use and the session, batched), as a password session\'s liveness check, and the request log names the caller', async () => {
  const { accessToken, key } = await storedSession(app, pds.did)
  const raw = new RawClient(pds, key)
  await raw.xrpc('GET', 'com.atproto.server.getSession', accessToken)
  const res = await raw.xrpc('GET', 'com.atproto.server.getSession', accessToken)
  expect(res.status).toBe(200)
  const line = await lineFor(pds, res)
  expect(line).toMatchObject({ path: '/xrpc/com.atproto.server.getSession', status: 200, did: pds.did })
  // The same call with a password session, which reads its session too (src/auth/live-session.ts): OAuth costs no more.
  const { accessJwt } = (await fetch(`${pds.url}/xrpc/com.atproto.server.createSession`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ identifier: pds.handle, password: pds.password }),
  }).then((r) => r.json())) as { accessJwt: string }
  const withPassword = await fetch(`${pds.url}/xrpc/com.atproto.server.getSession`, { headers: { authorization: `Bearer ${accessJwt}` } })
  expect(withPassword.status).toBe(200)
  const passwordLine = await lineFor(pds, withPassword)
  expect(line.d1.queries).toBe(passwordLine.d1.queries)
  expect(line.d1.rowsWritten).toBeGreaterThanOrEqual(1)
  // No token, code or secret ever reaches the log.
  const log = pds.output()
  for (const secret of [accessToken, pds.password, pds.jwtSecret]) expect(log).not.toContain(secret)
}, 60_000)

test('refresh: new tokens, the previous access token is refused on the very next request', async () => {
  const before = await storedSession(app, pds.did)
  await session.getTokenInfo(true)
  const after = await storedSession(app, pds.did)
  expect(after.accessToken).not.toBe(before.accessToken)
  expect(after.refreshToken).not.toBe(before.refreshToken)
  const raw = new RawClient(pds, after.key)
  const old = await raw.xrpc('GET', 'com.atproto.server.getSession', before.accessToken)
  expect(old.status).toBe(401)
  expect(old.body?.error).toBe('invalid_token')
  expect(old.headers.get('www-authenticate')).toMatch(/^DPoP .*error="invalid_token"/)
  expect((await raw.xrpc('GET', 'com.atproto.server.getSession', after.accessToken)).status).toBe(200)
  expect((await call(session, 'com.atproto.server.getSession')).status).toBe(200)
}, 60_000)

test('revoked from the account page (screenshots saved): the next call is refused', async () => {
  const page = await owner.newPage()
  const res = await page.goto(`${pds.publicUrl}/account`)
  expect(res?.status()).toBe(200)
  // The browser signed in during the OAuth flow: no password asked again.
  expect(await page.locator('#password').count()).toBe(0)
  const appRow = page.locator('#apps li').first()
  expect(await appRow.innerText()).toContain('Development client')
  expect(await appRow.innerText()).toContain('atproto transition:generic')
  expect(await appRow.innerText()).toContain('Last used')
  await screenshots(page, SHOTS, 'oauth-account')
  await page.emulateMedia({ colorScheme: 'dark' })
  await page.screenshot({ path: join(SHOTS, 'oauth-account-dark.png'), fullPage: true })
  await page.emulateMedia({ colorScheme: 'light' })
  const { accessToken, key } = await storedSession(app, pds.did)
  const raw = new RawClient(pds, key)
  expect((await raw.xrpc('GET', 'com.atproto.server.getSession', accessToken)).status).toBe(200)
  await appRow.locator('button[data-action="revoke-app"]').click()
  await page.waitForURL(`${pds.publicUrl}/account`)
  expect(await page.locator('#apps').innerText()).toContain('No app has been given access')
  const refused = await raw.xrpc('GET', 'com.atproto.server.getSession', accessToken)
  expect(refused.status).toBe(401)
  expect(refused.headers.get('www-authenticate')).toContain('error="invalid_token"')
  // The client library tries to refresh on invalid_token; that fails too (the session is gone), so it hands back the 401.
  expect((await call(session, 'com.atproto.server.getSession')).status).toBe(401)
  await page.close()
}, 60_000)

test('a remembered browser approves a known app without the password; signing out revokes the session', async () => {
  const again = loopbackClient(pds, { scope: 'atproto transition:generic', callbackPort: await freePort() })
  const seen: string[] = []
  const { session: second } = await signIn(again, owner, pds.handle, { password: pds.password, onPage: async (name) => void seen.push(name) })
  expect(seen).toEqual(['consent'])
  const { accessToken, key } = await storedSession(again, pds.did)
  expect((await call(second, 'com.atproto.server.getSession')).status).toBe(200)
  await second.signOut()
  const refused = await new RawClient(pds, key).xrpc('GET', 'com.atproto.server.getSession', accessToken)
  expect(refused.status).toBe(401)
  expect(refused.body?.error).toBe('invalid_token')
}, 90_000)
