/**
 * Signing in to an atproto app with this PDS, end to end: the official OAuth
 * client library (`@atproto/oauth-client-node`, a loopback development
 * client) resolves the handle, discovers the authorization server, pushes its
 * request with DPoP, and real headless Chromium signs in and approves on our
 * pages; the code is exchanged, and the session used, refreshed and revoked.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import type { Browser } from 'playwright-core'
import { freePort, type PdsProcess } from './harness'
import { launchChromium, loopbackClient, signIn } from './helpers/oauth-client'
import { usePds } from './use-pds'

let pds: PdsProcess
let browser: Browser

usePds((started) => {
  pds = started
})

beforeAll(async () => {
  browser = await launchChromium()
})

afterAll(async () => {
  await browser?.close()
})

test('a loopback client signs in: PAR, sign-in and consent in Chromium, code exchange', async () => {
  const app = loopbackClient(pds, { scope: 'atproto transition:generic', callbackPort: await freePort() })
  const { session, callback } = await signIn(app, browser, pds.handle, { password: pds.password })
  expect(callback.searchParams.get('iss')).toBe(pds.publicUrl)
  expect(session.did as string).toBe(pds.did)
  const info = await session.getTokenInfo()
  expect(info.scope).toBe('atproto transition:generic')
  expect(new URL(info.aud).origin).toBe(pds.publicUrl)
}, 60_000)

test('the session posts and reads back with DPoP; getSession hides the email without account:email', async () => {
  const app = loopbackClient(pds, { scope: 'atproto transition:generic', callbackPort: await freePort() })
  const { session } = await signIn(app, browser, pds.handle, { password: pds.password })
  const call = async (nsid: string, body?: unknown) => {
    const res = await session.fetchHandler(`/xrpc/${nsid}`, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    return { status: res.status, body: (await res.json().catch(() => null)) as Record<string, any>, headers: res.headers }
  }
  const created = await call('com.atproto.repo.createRecord', { repo: pds.did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'hello over OAuth', createdAt: new Date().toISOString() } })
  expect(created.status).toBe(200)
  const rkey = created.body.uri.split('/').pop()
  const read = await call(`com.atproto.repo.getRecord?${new URLSearchParams({ repo: pds.did, collection: "app.bsky.feed.post", rkey })}`)
  expect(read.body.value.text).toBe('hello over OAuth')
  const me = await call('com.atproto.server.getSession')
  expect(me.status).toBe(200)
  expect(me.body.did).toBe(pds.did)
  expect(me.body.email).toBeUndefined()
  expect(me.headers.get('dpop-nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/)
}, 60_000)
