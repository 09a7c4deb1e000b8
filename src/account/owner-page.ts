/**
 * The owner's account page, its domain side: what is shown (apps approved
 * with OAuth and their sessions, app passwords, password sessions, signed-in
 * browsers) and the revocations it offers. Revoking an app deletes its
 * sessions in one batch: its access tokens fail on the very next request.
 * Password sessions and app passwords lose their refresh token at once; their
 * access tokens are stateless JWTs that live out their two hours, as on the
 * reference PDS.
 */
import { createAppPassword } from '../auth/app-passwords'
import { deleteAppPassword, listAppPasswords, type AppPasswordRow } from '../db/account'
import { listSessions } from '../db/oauth'
import { listDevices, listGrants, revokeClient } from '../db/oauth-account'
import { deleteSessionOf, listLiveRefreshTokens } from '../db/tokens'
import { iso, type OAuthContext } from '../oauth/context'
import { signOutDevice } from '../oauth/devices'
import { describeScope } from '../oauth/scope-descriptions'

/** How long a password session's refresh token lives (src/auth/session.ts): it was issued this long before it expires. */
const PASSWORD_REFRESH_LIFETIME_MS = 90 * 24 * 3600 * 1000

export interface AuthorizedApp {
  clientId: string
  name: string
  homePage: string | null
  /** What the scope allows, in the consent page's group titles. */
  allows: string[]
  scope: string
  approvedAt: string
  /** Last token issue (sign-in or refresh) of any of its sessions; null when it holds none. */
  lastUsedAt: string | null
  sessions: number
}

export interface PasswordSession {
  id: string
  /** The app password it was made with, or null for the owner's password. */
  appPassword: string | null
  /** When its tokens were last issued (login or refresh). */
  lastRefreshAt: string
  expiresAt: string
}

export interface SignedInBrowser {
  id: string
  userAgent: string | null
  remembered: boolean
  createdAt: string
  expiresAt: string
  current: boolean
}

export interface AccountOverview {
  apps: AuthorizedApp[]
  appPasswords: AppPasswordRow[]
  passwordSessions: PasswordSession[]
  browsers: SignedInBrowser[]
}

export const accountOverview = async (ctx: OAuthContext, currentDeviceId: string): Promise<AccountOverview> => {
  const now = iso(ctx.now)
  const [grants, sessions, appPasswords, refreshTokens, devices] = await Promise.all([
    listGrants(ctx.db),
    listSessions(ctx.db, now),
    listAppPasswords(ctx.db),
    listLiveRefreshTokens(ctx.db, now),
    listDevices(ctx.db, now),
  ])
  const apps = grants.map((grant): AuthorizedApp => {
    const own = sessions.filter((s) => s.clientId === grant.clientId)
    return {
      clientId: grant.clientId,
      name: grant.clientName ?? grant.clientId,
      homePage: grant.clientUri,
      // Titles only: sets are not resolved here (the page must load without the network).
      allows: describeScope(grant.scope, new Map(), ctx.config.handle)
        .slice(1)
        .map((g) => g.title),
      scope: grant.scope,
      approvedAt: grant.updatedAt,
      lastUsedAt: own[0]?.refreshedAt ?? null,
      sessions: own.length,
    }
  })
  return {
    apps,
    appPasswords,
    passwordSessions: refreshTokens.map((t) => ({
      id: t.id,
      appPassword: t.appPasswordName,
      lastRefreshAt: iso(Date.parse(t.expiresAt) - PASSWORD_REFRESH_LIFETIME_MS),
      expiresAt: t.expiresAt,
    })),
    browsers: devices.map((d) => ({ ...d, current: d.id === currentDeviceId })),
  }
}

export const revokeApp = (ctx: OAuthContext, clientId: string): Promise<void> => revokeClient(ctx.db, clientId)
export const revokePasswordSession = (ctx: OAuthContext, id: string): Promise<void> => deleteSessionOf(ctx.db, id)
export const revokeAppPassword = (ctx: OAuthContext, name: string): Promise<void> => deleteAppPassword(ctx.db, name)
export const signOutBrowser = (ctx: OAuthContext, id: string): Promise<void> => signOutDevice(ctx, id)
export const addAppPassword = (ctx: OAuthContext, name: string, privileged: boolean) => createAppPassword(ctx.db, ctx.config.did, name, privileged)
