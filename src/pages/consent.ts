/**
 * The consent page: which app, signed in as whom, what it will be able to do
 * (in plain words, grouped), and approve or deny. Both buttons post the
 * page's anti-forgery token; nothing happens on GET.
 */
import type { PermissionGroup } from '../oauth/scope-descriptions'
import { appCard, type AppView } from './app-card'
import { escapeHtml, FORM_STYLE, hiddenFields, pageHeader, renderPage } from './layout'

export interface ConsentPage {
  hostname: string
  handle: string
  app: AppView
  permissions: PermissionGroup[]
  /** Where the browser goes afterwards (the redirect URI's origin or scheme). */
  returnsTo: string
  action: string
  hidden: Record<string, string>
}

const group = (g: PermissionGroup): string =>
  `<li${g.sensitive ? ' class="sensitive"' : ''}><h3>${escapeHtml(g.title)}</h3>${g.detail ? `<p>${escapeHtml(g.detail)}</p>` : ''}<ul>${g.items
    .map((item) => `<li>${escapeHtml(item)}</li>`)
    .join('')}</ul></li>`

export const renderConsent = (p: ConsentPage): string => {
  const form = (value: string, label: string, cls: string) =>
    `<form method="post" action="${escapeHtml(p.action)}">${hiddenFields(p.hidden)}<button type="submit" name="action" value="${value}" class="${cls}" data-action="${value}">${label}</button></form>`
  const body = `${pageHeader(p.hostname, 'atproto Personal Data Server')}
<div class="card">${appCard(p.app)}
<h1>Allow ${escapeHtml(p.app.name)} to use your account?</h1>
<p class="muted">Signed in as <strong>@${escapeHtml(p.handle)}</strong>. It will be able to:</p>
<ul class="perms" data-field="permissions">${p.permissions.map(group).join('')}</ul>
<div class="actions">${form('deny', 'Deny', '')}${form('approve', 'Allow', 'primary')}</div>
</div>
<footer>Your password is not shared. You are then sent back to <span class="mono">${escapeHtml(p.returnsTo)}</span>.
Revoke access at any time on <a href="/account">your account page</a>.</footer>`
  return renderPage({ title: `Allow ${p.app.name}? · ${p.hostname}`, body, style: FORM_STYLE, narrow: true })
}
