/**
 * The owner's account page: apps with access (OAuth), app passwords, and
 * sessions (password sessions and signed-in browsers), each with its revoke
 * button; a new app password is shown once, right after it is made.
 */
import type { AccountOverview } from '../account/owner-page'
import { ago, escapeHtml, FORM_STYLE, hiddenFields, pageHeader, renderPage } from './layout'

export interface AccountPage {
  hostname: string
  handle: string
  did: string
  overview: AccountOverview
  csrf: string
  now: string
  /** A just-created app password, shown this once. */
  created?: { name: string; password: string }
  notice?: { kind: 'ok' | 'error'; text: string }
}

const button = (p: AccountPage, fields: Record<string, string>, label: string, cls = 'small danger') =>
  `<form method="post" action="/account">${hiddenFields({ csrf: p.csrf, ...fields })}<button type="submit" class="${cls}" data-action="${escapeHtml(fields.action)}">${label}</button></form>`

/** Where an app lives, from its client id (a development client's id is a long localhost URL). */
const clientHost = (clientId: string): string => (clientId.startsWith('http://localhost') ? 'localhost (development client)' : new URL(clientId).host)

/** "Chrome on Android" from a user agent, enough to tell one's browsers apart. */
export const browserLabel = (userAgent: string | null): string => {
  if (!userAgent) return 'Unknown browser'
  const browser = [['Edg/', 'Edge'], ['Firefox/', 'Firefox'], ['Chrome/', 'Chrome'], ['Safari/', 'Safari']].find(([m]) => userAgent.includes(m))?.[1] ?? 'Browser'
  const os = [['Android', 'Android'], ['iPhone', 'iPhone'], ['iPad', 'iPad'], ['Mac OS X', 'macOS'], ['Windows', 'Windows'], ['Linux', 'Linux']].find(([m]) => userAgent.includes(m))?.[1]
  return os ? `${browser} on ${os}` : browser
}

const when = (iso: string | null, now: string): string => (iso ? `<time datetime="${escapeHtml(iso)}">${ago(iso, now)}</time>` : 'never')

const list = (items: string[], empty: string): string => (items.length ? `<ul class="items">${items.join('')}</ul>` : `<p class="empty">${empty}</p>`)

const apps = (p: AccountPage): string =>
  list(
    p.overview.apps.map(
      (a) => `<li data-client="${escapeHtml(a.clientId)}"><div class="what"><strong>${escapeHtml(a.name)}</strong>
<small>${a.homePage?.startsWith('https://') ? `<a href="${escapeHtml(a.homePage)}" rel="noopener noreferrer">${escapeHtml(a.homePage)}</a>` : escapeHtml(clientHost(a.clientId))}</small>
<small>May: ${escapeHtml(a.allows.join(', ') || 'know who you are')}</small>
<small class="mono" data-field="scope">${escapeHtml(a.scope)}</small>
<small>Last used ${when(a.lastUsedAt, p.now)} · ${a.sessions} active session${a.sessions === 1 ? '' : 's'}</small></div>
${button(p, { action: 'revoke-app', client_id: a.clientId }, 'Revoke')}</li>`,
    ),
    'No app has been given access with OAuth.',
  )

const appPasswords = (p: AccountPage): string => {
  const created = p.created
    ? `<div class="notice ok" data-field="new-app-password"><strong>App password "${escapeHtml(p.created.name)}"</strong><br>Enter it in the app now: it is not shown again.<br><span class="secret">${escapeHtml(p.created.password)}</span></div>`
    : ''
  const rows = list(
    p.overview.appPasswords.map(
      (a) => `<li data-app-password="${escapeHtml(a.name)}"><div class="what"><strong>${escapeHtml(a.name)}</strong><small>Created ${when(a.createdAt, p.now)}${a.privileged ? ' · may use direct messages' : ''}</small></div>
${button(p, { action: 'revoke-app-password', name: a.name }, 'Revoke')}</li>`,
    ),
    'No app passwords.',
  )
  const form = `<form method="post" action="/account" class="create">${hiddenFields({ csrf: p.csrf })}
<label for="app-password-name">New app password</label>
<input type="text" id="app-password-name" name="name" maxlength="100" required placeholder="e.g. my bot">
<label class="check"><input type="checkbox" name="privileged" value="1"> Allow direct messages</label>
<div class="actions"><button type="submit" name="action" value="create-app-password" data-action="create-app-password">Create app password</button></div></form>`
  return `${created}${rows}${form}`
}

const sessions = (p: AccountPage): string => {
  const passwordSessions = p.overview.passwordSessions.map(
    (s) => `<li><div class="what"><strong>${s.appPassword ? `App password "${escapeHtml(s.appPassword)}"` : 'Password sign-in'}</strong><small>An app signed in with your password (the Bluesky app, createSession) · last refreshed ${when(s.lastRefreshAt, p.now)}</small></div>
${button(p, { action: 'revoke-session', id: s.id }, 'Sign out')}</li>`,
  )
  const browsers = p.overview.browsers.map(
    (b) => `<li><div class="what"><strong>${escapeHtml(browserLabel(b.userAgent))}${b.current ? ' <span class="badge">this browser</span>' : ''}</strong><small>Signed in to these pages ${when(b.createdAt, p.now)}${b.remembered ? ' · remembered for 30 days' : ''}</small></div>
${button(p, { action: 'sign-out-browser', id: b.id }, 'Sign out')}</li>`,
  )
  return list([...passwordSessions, ...browsers], 'No active sessions.')
}

export const renderAccount = (p: AccountPage): string => {
  const notice = p.notice ? `<p class="notice ${p.notice.kind}" role="status">${escapeHtml(p.notice.text)}</p>` : ''
  const body = `${pageHeader(`@${p.handle}`, p.did)}
${notice}
<section class="card" id="apps"><h2>Apps with access</h2>${apps(p)}</section>
<section class="card" id="app-passwords"><h2>App passwords</h2>${appPasswords(p)}</section>
<section class="card" id="sessions"><h2>Sessions</h2>${sessions(p)}
<p class="muted">Revoking an app, signing out a session or revoking an app password takes effect on its very next request.</p></section>
<div class="actions">${button(p, { action: 'sign-out' }, 'Sign out of this browser', '')}</div>
<footer>${escapeHtml(p.hostname)} · <a href="/">status</a></footer>`
  return renderPage({ title: `Account · ${p.hostname}`, body, style: `${FORM_STYLE}section.card{padding:18px 20px}section.card h2{margin-top:0}form.create{margin-top:8px}`, narrow: false })
}
