/**
 * The sign-in page, for an app's authorization request or for the account
 * page: the owner's password (a hidden username field lets password managers
 * fill it), "remember this device", and, for an app, a way to say no.
 */
import { appCard, type AppView } from './app-card'
import { escapeHtml, FORM_STYLE, hiddenFields, pageHeader, renderPage } from './layout'

export interface SignInPage {
  hostname: string
  handle: string
  /** Where the form posts (/oauth/authorize or /account). */
  action: string
  /** Fields the form carries back (csrf, request_uri, client_id). */
  hidden: Record<string, string>
  /** The app asking, when this sign-in is for an authorization request. */
  app?: AppView
  error?: string
}

export const renderSignIn = (p: SignInPage): string => {
  const intro = p.app
    ? `${appCard(p.app)}<h1>Sign in to continue</h1><p class="muted">${escapeHtml(p.app.name)} wants to use your account <strong>@${escapeHtml(p.handle)}</strong>. Sign in first; you choose what it may do on the next page.</p>`
    : `<h1>Sign in</h1><p class="muted">Manage the apps and sessions of <strong>@${escapeHtml(p.handle)}</strong>.</p>`
  const error = p.error ? `<p class="notice error" role="alert" data-field="error">${escapeHtml(p.error)}</p>` : ''
  const cancel = p.app
    ? `<form method="post" action="${escapeHtml(p.action)}">${hiddenFields(p.hidden)}<button type="submit" name="action" value="deny" data-action="deny">Cancel</button></form>`
    : ''
  const body = `${pageHeader(p.hostname, 'atproto Personal Data Server')}
<div class="card">${intro}${error}
<form method="post" action="${escapeHtml(p.action)}" id="sign-in">${hiddenFields(p.hidden)}
<input type="text" name="username" value="${escapeHtml(p.handle)}" autocomplete="username" hidden readonly>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required autofocus>
<label class="check"><input type="checkbox" name="remember" value="1" checked> Remember this device for 30 days</label>
</form>
<div class="actions">${cancel}<button type="submit" form="sign-in" name="action" value="sign-in" class="primary" data-action="sign-in">Sign in</button></div>
</div>
<footer>Only the owner of this server signs in here. Apps never see your password.</footer>`
  return renderPage({ title: `Sign in · ${p.hostname}`, body, style: FORM_STYLE, narrow: true })
}
