/**
 * `/oauth/authorize`: the pages an app sends the owner's browser to.
 *
 * GET only reads: it shows the sign-in page, or, to a signed-in browser, the
 * consent page (a link preview or a prefetch changes nothing and burns no
 * request). POST acts: `sign-in` (password, rate limited), `approve` (a code,
 * then 303 back to the app), `deny` (303 back with `access_denied`),
 * `sign-out`. Every form carries the anti-forgery token. Errors the app
 * cannot be told about (an unknown request, a broken client) are an error
 * page, never a redirect.
 */
import type { Context, Hono } from 'hono'
import type { OAuthClient } from '../oauth/clients'
import { clientDisplayName } from '../oauth/clients'
import { oauthContext, type OAuthContext } from '../oauth/context'
import {
  approveAuthorization,
  AuthorizationPageError,
  authorizationResponseUrl,
  bindToDevice,
  denyAuthorization,
  loadPendingAuthorization,
  type PendingAuthorization,
} from '../oauth/authorize'
import { findDevice, signOutDevice } from '../oauth/devices'
import { describeScope } from '../oauth/scope-descriptions'
import { resolveIncludes } from '../oauth/scopes'
import { OAuthError } from '../oauth/errors'
import type { AppView } from '../pages/app-card'
import { renderConsent } from '../pages/consent'
import { renderErrorPage } from '../pages/error'
import { renderSignIn } from '../pages/sign-in'
import type { AppEnv } from './context'
import { formFields, signInBrowser } from './browser-sign-in'
import { clearDeviceCookie, csrfToken, formIsGenuine, formTargetOf, pageHeaders, readDeviceCookie } from './page-security'

const PATH = '/oauth/authorize'

/** Links and images from an app's metadata are shown only when they are https. */
const httpsOnly = (uri: string | undefined | null): string | null => (uri?.startsWith('https://') ? uri : null)

export const appView = (client: OAuthClient): AppView => {
  const logo = client.metadata.logo_uri
  return {
    name: clientDisplayName(client),
    host: client.kind === 'loopback' ? 'localhost' : new URL(client.id).host,
    homePage: httpsOnly(client.metadata.client_uri),
    logo: httpsOnly(logo),
    development: client.kind === 'loopback',
    confidential: client.confidential,
  }
}

const errorPage = (c: Context<AppEnv>, err: AuthorizationPageError, status: 400 | 403 | 429 = 400): Response =>
  c.html(renderErrorPage({ hostname: c.get('deps').config.hostname, title: err.title, message: err.message, backTo: err.backTo }), status, pageHeaders())

const hiddenFor = (pending: PendingAuthorization, csrf: string): Record<string, string> => ({
  csrf,
  client_id: pending.client.id,
  request_uri: `urn:ietf:params:oauth:request_uri:${pending.requestId}`,
})

const signInPage = async (c: Context<AppEnv>, pending: PendingAuthorization, error?: string, status: 200 | 401 | 429 = 200): Promise<Response> => {
  const { config } = c.get('deps')
  const html = renderSignIn({ hostname: config.hostname, handle: config.handle, action: PATH, hidden: hiddenFor(pending, await csrfToken(c)), app: appView(pending.client), error })
  return c.html(html, status, pageHeaders([formTargetOf(pending.params.redirect_uri)]))
}

const consentPage = async (c: Context<AppEnv>, ctx: OAuthContext, pending: PendingAuthorization): Promise<Response> => {
  const { config } = ctx
  let sets: Awaited<ReturnType<typeof resolveIncludes>>
  try {
    sets = await resolveIncludes(ctx, pending.params.scope)
  } catch (err) {
    if (err instanceof OAuthError) return errorPage(c, new AuthorizationPageError('This app asks for unknown permissions', err.description, pending.client.metadata.client_uri ?? null))
    throw err
  }
  const target = formTargetOf(pending.params.redirect_uri)
  const html = renderConsent({
    hostname: config.hostname,
    handle: config.handle,
    app: appView(pending.client),
    permissions: describeScope(pending.params.scope, sets, config.handle),
    returnsTo: target,
    action: PATH,
    hidden: hiddenFor(pending, await csrfToken(c)),
  })
  return c.html(html, 200, pageHeaders([target]))
}

/** 303 back to the app (RFC 6749 §4.1.2 via RFC 9207's `iss`). */
const backToApp = (c: Context<AppEnv>, location: string): Response => c.body(null, 303, { location, 'cache-control': 'no-store' })

const loadOrPage = async (c: Context<AppEnv>, ctx: OAuthContext, query: { client_id?: string; request_uri?: string }) => {
  try {
    return await loadPendingAuthorization(ctx, query)
  } catch (err) {
    if (err instanceof AuthorizationPageError) return errorPage(c, err)
    throw err
  }
}

export const mountAuthorizePages = (app: Hono<AppEnv>): void => {
  app.get(PATH, async (c) => {
    const ctx = await oauthContext(c.get('deps'))
    const pending = await loadOrPage(c, ctx, { client_id: c.req.query('client_id'), request_uri: c.req.query('request_uri') })
    if (pending instanceof Response) return pending
    const device = await findDevice(ctx, readDeviceCookie(c))
    if (pending.deviceId !== null && device?.id !== pending.deviceId) {
      return errorPage(c, new AuthorizationPageError('Sign-in request unavailable', 'This sign-in request was started in another browser.'))
    }
    // No silent sign-in: every approval is the owner's click on this page.
    if (pending.params.prompt === 'none') {
      return backToApp(c, authorizationResponseUrl(ctx.config.serviceUrl, pending.params, {
        error: device ? 'consent_required' : 'login_required',
        error_description: 'This server asks the owner to approve every sign-in',
      }))
    }
    if (!device || pending.params.prompt === 'login') return signInPage(c, pending)
    return consentPage(c, ctx, pending)
  })

  app.post(PATH, async (c) => {
    const ctx = await oauthContext(c.get('deps'))
    const form = await formFields(c)
    if (!(await formIsGenuine(c, form.csrf))) {
      return errorPage(c, new AuthorizationPageError('Form expired', 'This form could not be verified (it may be too old, or come from another site). Go back to the app and try again.'), 403)
    }
    const pending = await loadOrPage(c, ctx, { client_id: form.client_id, request_uri: form.request_uri })
    if (pending instanceof Response) return pending
    const device = await findDevice(ctx, readDeviceCookie(c))
    try {
      switch (form.action) {
        case 'sign-in': {
          const signedIn = await signInBrowser(c, ctx, form)
          if (!signedIn.ok) return signInPage(c, pending, signedIn.message, signedIn.status)
          await bindToDevice(ctx, pending, signedIn.device.id)
          return consentPage(c, ctx, { ...pending, deviceId: signedIn.device.id })
        }
        case 'approve':
          if (!device) return signInPage(c, pending, 'Sign in to approve.')
          return backToApp(c, await approveAuthorization(ctx, pending, device.id))
        case 'deny':
          return backToApp(c, await denyAuthorization(ctx, pending, device?.id ?? ''))
        case 'sign-out':
          if (device) await signOutDevice(ctx, device.id)
          clearDeviceCookie(c)
          return signInPage(c, pending)
        default:
          return errorPage(c, new AuthorizationPageError('Unknown action', 'This form asked for something this page does not do.'))
      }
    } catch (err) {
      if (err instanceof AuthorizationPageError) return errorPage(c, err)
      throw err
    }
  })
}
