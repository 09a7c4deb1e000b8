/**
 * `/account`: the owner's account page, behind the same sign-in as the
 * authorization pages. GET shows it (or the sign-in form); POST acts, with
 * the anti-forgery token, then redirects back (303), except after creating
 * an app password, whose secret is shown once in the answer itself (never
 * in a URL or a cookie).
 */
import type { Context, Hono } from 'hono'
import { InvalidRequestError } from '../errors'
import { oauthContext, type OAuthContext } from '../oauth/context'
import { findDevice } from '../oauth/devices'
import { accountOverview, addAppPassword, revokeApp, revokeAppPassword, revokePasswordSession, signOutBrowser } from '../account/owner-page'
import { renderAccount, type AccountPage } from '../pages/account'
import { renderErrorPage } from '../pages/error'
import { renderSignIn } from '../pages/sign-in'
import { formFields, signInBrowser } from './browser-sign-in'
import type { AppEnv } from './context'
import { clearDeviceCookie, csrfToken, formIsGenuine, pageHeaders, readDeviceCookie } from './page-security'

const PATH = '/account'

const signInPage = async (c: Context<AppEnv>, error?: string, status: 200 | 401 | 429 = 200): Promise<Response> => {
  const { config } = c.get('deps')
  return c.html(renderSignIn({ hostname: config.hostname, handle: config.handle, action: PATH, hidden: { csrf: await csrfToken(c) }, error }), status, pageHeaders())
}

const accountPage = async (c: Context<AppEnv>, ctx: OAuthContext, deviceId: string, extra: Pick<AccountPage, 'created' | 'notice'> = {}): Promise<Response> => {
  const { config } = ctx
  const html = renderAccount({
    hostname: config.hostname,
    handle: config.handle,
    did: config.did,
    overview: await accountOverview(ctx, deviceId),
    csrf: await csrfToken(c),
    now: new Date(ctx.now).toISOString(),
    ...extra,
  })
  return c.html(html, 200, pageHeaders())
}

const back = (c: Context<AppEnv>): Response => c.body(null, 303, { location: PATH, 'cache-control': 'no-store' })

export const mountAccountPage = (app: Hono<AppEnv>): void => {
  app.get(PATH, async (c) => {
    const ctx = await oauthContext(c.get('deps'))
    const device = await findDevice(ctx, readDeviceCookie(c))
    return device ? accountPage(c, ctx, device.id) : signInPage(c)
  })

  app.post(PATH, async (c) => {
    const ctx = await oauthContext(c.get('deps'))
    const form = await formFields(c)
    if (!(await formIsGenuine(c, form.csrf))) {
      const html = renderErrorPage({ hostname: ctx.config.hostname, title: 'Form expired', message: 'This form could not be verified (it may be too old, or come from another site). Reload the page and try again.', backTo: PATH })
      return c.html(html, 403, pageHeaders())
    }
    if (form.action === 'sign-in') {
      const signedIn = await signInBrowser(c, ctx, form)
      return signedIn.ok ? back(c) : signInPage(c, signedIn.message, signedIn.status)
    }
    const device = await findDevice(ctx, readDeviceCookie(c))
    if (!device) return signInPage(c, 'Your sign-in has expired. Sign in again.')
    switch (form.action) {
      case 'sign-out':
        await signOutBrowser(ctx, device.id)
        clearDeviceCookie(c)
        return back(c)
      case 'revoke-app':
        if (form.client_id) await revokeApp(ctx, form.client_id)
        return back(c)
      case 'revoke-app-password':
        if (form.name) await revokeAppPassword(ctx, form.name)
        return back(c)
      case 'revoke-session':
        if (form.id) await revokePasswordSession(ctx, form.id)
        return back(c)
      case 'sign-out-browser':
        if (form.id) await signOutBrowser(ctx, form.id)
        if (form.id === device.id) clearDeviceCookie(c)
        return back(c)
      case 'create-app-password': {
        const name = (form.name ?? '').trim()
        if (!name || name.length > 100) return accountPage(c, ctx, device.id, { notice: { kind: 'error', text: 'Give the app password a name (up to 100 characters).' } })
        try {
          const created = await addAppPassword(ctx, name, form.privileged === '1')
          return accountPage(c, ctx, device.id, { created: { name: created.name, password: created.password } })
        } catch (err) {
          if (err instanceof InvalidRequestError) return accountPage(c, ctx, device.id, { notice: { kind: 'error', text: err.message } })
          throw err
        }
      }
      default:
        return back(c)
    }
  })
}
