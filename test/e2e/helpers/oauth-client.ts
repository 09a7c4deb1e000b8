/**
 * OAuth from the client's side for the e2e suites: `@atproto/oauth-client-node`
 * (the library atproto apps use) configured as a loopback development client
 * or a confidential web client, and headless Chromium (Debian's, through
 * playwright-core) clicking through our sign-in and consent pages. The
 * app's redirect target is intercepted in the browser, so no callback server
 * is needed.
 */
import { calculateJwkThumbprint, importJWK, type JWK } from 'jose'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'
import { type JoseKey, NodeOAuthClient, type NodeSavedSession, type NodeSavedState, type OAuthSession, requestLocalLock } from '@atproto/oauth-client-node'
import type { PdsProcess } from '../harness'
import type { DpopKey } from './oauth-raw'

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

export const launchChromium = (): Promise<Browser> => chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS })

/** An in-memory store, as the client library wants them. */
const memoryStore = <V>() => {
  const map = new Map<string, V>()
  return {
    map,
    set: async (key: string, value: V) => void map.set(key, value),
    get: async (key: string) => map.get(key),
    del: async (key: string) => void map.delete(key),
  }
}

export interface TestClient {
  client: NodeOAuthClient
  redirectUri: string
  sessions: ReturnType<typeof memoryStore<NodeSavedSession>>
}

/** The client library as an app configures it, with in-memory stores; `keys` for a confidential client. */
const newClient = (pds: PdsProcess, metadata: Record<string, unknown>, keys?: JoseKey[]): TestClient => {
  const sessions = memoryStore<NodeSavedSession>()
  const client = new NodeOAuthClient({
    clientMetadata: metadata as never,
    ...(keys ? { keyset: keys } : {}),
    allowHttp: true,
    handleResolver: pds.publicUrl,
    requestLock: requestLocalLock,
    stateStore: memoryStore<NodeSavedState>(),
    sessionStore: sessions,
  })
  return { client, redirectUri: (metadata.redirect_uris as string[])[0], sessions }
}

/** A loopback development client (`http://localhost?redirect_uri=...&scope=...`), as the spec defines it. */
export const loopbackClient = (pds: PdsProcess, opts: { scope: string; callbackPort: number }): TestClient => {
  const redirectUri = `http://127.0.0.1:${opts.callbackPort}/callback`
  return newClient(pds, {
    client_id: `http://localhost?${new URLSearchParams({ redirect_uri: redirectUri, scope: opts.scope })}`,
    redirect_uris: [redirectUri],
    scope: opts.scope,
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: 'none',
    application_type: 'native',
    dpop_bound_access_tokens: true,
  })
}

/** What an app's logo looks like in the screenshots. */
const APP_LOGO = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 48 48"><rect width="48" height="48" rx="12" fill="#f59e0b"/><text x="24" y="32" font-size="24" text-anchor="middle" fill="#fff" font-family="sans-serif">E</text></svg>'

export interface BrowserStep {
  /** Called with the page on each screen (for screenshots). */
  onPage?: (name: 'sign-in' | 'consent', page: Page) => Promise<void>
  password: string
  decision?: 'approve' | 'deny'
}

/**
 * Opens the authorization URL in `page`, signs in if asked, then approves or
 * denies; returns the URL the browser was sent back to (intercepted).
 */
export const clickThrough = async (page: Page, authorizeUrl: string, redirectUri: string, step: BrowserStep): Promise<URL> => {
  const target = new URL(redirectUri)
  let callback: URL | null = null
  await page.route(`${target.origin}/**`, async (route) => {
    const url = new URL(route.request().url())
    // The app's own site (its logo) answers too; only its redirect path is the way back.
    if (url.pathname !== target.pathname) return route.fulfill({ status: 200, contentType: 'image/svg+xml', body: APP_LOGO })
    callback = url
    await route.fulfill({ status: 200, contentType: 'text/plain', body: 'back in the app' })
  })
  const res = await page.goto(authorizeUrl)
  if (res?.status() !== 200) throw new Error(`authorization page answered ${res?.status()}: ${await res?.text()}`)
  if (await page.locator('#password').count()) {
    await step.onPage?.('sign-in', page)
    await page.fill('#password', step.password)
    await page.click('button[data-action="sign-in"]')
    await page.waitForSelector('button[data-action="approve"]')
  }
  await step.onPage?.('consent', page)
  await page.click(`button[data-action="${step.decision ?? 'approve'}"]`)
  for (let i = 0; i < 100 && !callback; i++) await page.waitForTimeout(50)
  if (!callback) throw new Error(`the browser was not sent back to ${redirectUri}; it shows ${page.url()}: ${await page.content()}`)
  return callback
}

/** The full sign-in: authorize, click through in the owner's browser, exchange the code. */
export const signIn = async (
  test: TestClient,
  browser: BrowserContext,
  handle: string,
  step: BrowserStep & { scope?: string },
): Promise<{ session: OAuthSession; callback: URL }> => {
  const url = await test.client.authorize(handle, step.scope ? { scope: step.scope } : {})
  const page = await browser.newPage()
  try {
    const callback = await clickThrough(page, url.href, test.redirectUri, step)
    const { session } = await test.client.callback(callback.searchParams)
    return { session, callback }
  } finally {
    await page.close()
  }
}

/** The client's stored copy of a session: its tokens and DPoP key (to replay them by hand in tests). */
export const storedSession = async (test: TestClient, did: string): Promise<{ accessToken: string; refreshToken: string | undefined; key: DpopKey }> => {
  const saved = test.sessions.map.get(did)
  if (!saved) throw new Error(`no stored session for ${did}`)
  const { d: _private, ...publicJwk } = saved.dpopJwk as JWK
  const privateKey = (await importJWK(saved.dpopJwk as JWK, 'ES256')) as CryptoKey
  return {
    accessToken: saved.tokenSet.access_token,
    refreshToken: saved.tokenSet.refresh_token,
    key: { privateKey, jwk: publicJwk, jkt: await calculateJwkThumbprint(publicJwk, 'sha256') },
  }
}

/** Screenshots at a phone's and a desktop's size, into .tmp/<name>-{phone,desktop}.png. */
export const screenshots = async (page: Page, dir: string, name: string): Promise<string[]> => {
  const sizes = { phone: { width: 390, height: 844 }, desktop: { width: 1280, height: 900 } }
  const files: string[] = []
  for (const [label, size] of Object.entries(sizes)) {
    await page.setViewportSize(size)
    const file = `${dir}/${name}-${label}.png`
    await page.screenshot({ path: file, fullPage: true })
    files.push(file)
  }
  return files
}

/** A confidential web client (`private_key_jwt`, an ES256 key published at `jwks_uri`), as a server-side app runs it. */
export const confidentialClient = (pds: PdsProcess, opts: { metadata: Record<string, unknown>; keys: JoseKey[] }): TestClient => newClient(pds, opts.metadata, opts.keys)
