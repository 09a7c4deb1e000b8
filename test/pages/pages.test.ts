/**
 * The pages (src/pages) are pure functions of their input: everything an app
 * controls (its name, links, logo) is escaped, links and logos are https
 * only, and forms carry the anti-forgery token; nothing in them runs script.
 */
import { describe, expect, it } from 'vitest'
import { appView } from '../../src/http/authorize'
import type { OAuthClient } from '../../src/oauth/clients'
import { renderAccount } from '../../src/pages/account'
import { renderConsent } from '../../src/pages/consent'
import { renderSignIn } from '../../src/pages/sign-in'

const HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'

const client = (metadata: Record<string, unknown>): OAuthClient =>
  ({ id: 'https://app.example.net/c.json', kind: 'discoverable', confidential: false, metadata: { redirect_uris: ['https://app.example.net/cb'], ...metadata } }) as unknown as OAuthClient

describe('what an app controls is inert', () => {
  it('a hostile name is escaped on the sign-in and consent pages', () => {
    const app = appView(client({ client_name: HOSTILE, client_uri: 'https://app.example.net', logo_uri: 'https://app.example.net/logo.png' }))
    const pages = [
      renderSignIn({ hostname: 'pds.example.com', handle: 'alice.test', action: '/oauth/authorize', hidden: { csrf: 't' }, app }),
      renderConsent({ hostname: 'pds.example.com', handle: 'alice.test', app, permissions: [{ title: HOSTILE, items: [HOSTILE], sensitive: true }], returnsTo: 'https://app.example.net', action: '/oauth/authorize', hidden: { csrf: 't' } }),
    ]
    for (const html of pages) {
      expect(html).not.toContain('<script>')
      expect(html).not.toContain('<img src=x')
      expect(html).toContain('&lt;script&gt;')
      expect(html).toContain('name="csrf" value="t"')
    }
  })

  it('links and logos that are not https are left out', () => {
    const app = appView(client({ client_name: 'App', client_uri: 'javascript:alert(1)', logo_uri: 'http://app.example.net/logo.png' }))
    expect(app.homePage).toBeNull()
    expect(app.logo).toBeNull()
    const html = renderConsent({ hostname: 'h', handle: 'alice.test', app, permissions: [], returnsTo: 'x', action: '/oauth/authorize', hidden: {} })
    expect(html).not.toContain('javascript:')
    expect(html).not.toContain('<img')
  })

  it('the account page escapes grants and never links a non-https home page', () => {
    const html = renderAccount({
      hostname: 'h',
      handle: 'alice.test',
      did: 'did:plc:abcdefghijklmnopqrstuvwx',
      csrf: 't',
      now: '2030-01-01T00:00:00.000Z',
      overview: {
        apps: [{ clientId: 'https://app.example.net/c.json', name: HOSTILE, homePage: 'javascript:alert(1)', allows: [HOSTILE], scope: HOSTILE, approvedAt: '2030-01-01T00:00:00.000Z', lastUsedAt: null, sessions: 0 }],
        appPasswords: [{ name: HOSTILE, createdAt: '2030-01-01T00:00:00.000Z', privileged: false }],
        passwordSessions: [],
        browsers: [{ id: 'd', userAgent: HOSTILE, remembered: true, createdAt: '2030-01-01T00:00:00.000Z', expiresAt: '2030-02-01T00:00:00.000Z', current: true }],
      },
    })
    expect(html).not.toContain('<script>')
    expect(html).not.toContain('href="javascript:')
    expect(html.match(/name="csrf" value="t"/g)?.length).toBeGreaterThanOrEqual(4)
  })
})
