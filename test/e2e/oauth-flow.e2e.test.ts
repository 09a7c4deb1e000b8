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
