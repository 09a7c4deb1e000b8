/**
 * What an OAuth session may call, method by method: ONE declarative table,
 * applied by the auth policy to every OAuth credential before a handler runs
 * (atproto permission spec; the reference PDS's per-route `authorize`
 * callbacks). Only checks that depend on the request body stay with the
 * handlers, through the credential's may-I questions: repo writes (collection
 * and action), uploadBlob (MIME type), getServiceAuth and every forwarded call
 * (`rpc:` method and audience).
 *
 * A method served here that is not in the table is refused to OAuth sessions:
 * a new method is closed until someone decides what it needs. Add a row when
 * adding a method (NSIDs are matched case-insensitively).
 */
import { AccountPermission, IdentityPermission, RpcPermission } from '@atproto/oauth-scopes'
import { ForbiddenError } from '../errors'
import { missingScope, type AccessCredentials } from './credentials'

export type OAuthMethodRule =
  /** Any OAuth session (the `atproto` scope is always there). */
  | { kind: 'open' }
  /** Never with OAuth, whatever the scope: the owner does these on the account page or with the password. */
  | { kind: 'never' }
  | { kind: 'account'; attr: 'email' | 'repo' | 'status'; action: 'read' | 'manage' }
  | { kind: 'identity'; attr: 'handle' | '*' }
  /** An app.bsky method answered here: `rpc:` at the AppView the client addresses (atproto-proxy), as if forwarded. */
  | { kind: 'appview'; alsoNeeds?: string[] }
  /** The handler asks the credential (the answer depends on the body or the target). */
  | { kind: 'handler' }

const open = { kind: 'open' } as const
const never = { kind: 'never' } as const
const handler = { kind: 'handler' } as const

export const OAUTH_METHOD_RULES: Readonly<Record<string, OAuthMethodRule>> = {
  // Records and blobs: collection/action and MIME type, checked by the handlers.
  'com.atproto.repo.createRecord': handler,
  'com.atproto.repo.putRecord': handler,
  'com.atproto.repo.deleteRecord': handler,
  'com.atproto.repo.applyWrites': handler,
  'com.atproto.repo.uploadBlob': handler,
  'com.atproto.repo.listMissingBlobs': open,
  'com.atproto.repo.importRepo': { kind: 'account', attr: 'repo', action: 'manage' },

  // Repo reads a client's agent may send its token with (the owner may read a deactivated repo).
  'com.atproto.sync.getLatestCommit': open,
  'com.atproto.sync.getRepo': open,
  'com.atproto.sync.getRecord': open,
  'com.atproto.sync.getBlocks': open,
  'com.atproto.sync.getBlob': open,
  'com.atproto.sync.listBlobs': open,

  // The session itself; getSession leaves the email out unless account:email is granted.
  'com.atproto.server.getSession': open,
  'com.atproto.server.checkAccountStatus': open,
  'com.atproto.server.getServiceAuth': handler,
  'com.atproto.server.requestEmailConfirmation': { kind: 'account', attr: 'email', action: 'manage' },
  'com.atproto.server.confirmEmail': { kind: 'account', attr: 'email', action: 'manage' },

  // Never for OAuth (the reference's list): credentials and grants are the owner's business.
  'com.atproto.server.createAppPassword': never,
  'com.atproto.server.listAppPasswords': never,
  'com.atproto.server.revokeAppPassword': never,
  'com.atproto.server.activateAccount': never,
  'com.atproto.server.deactivateAccount': never,
  'com.atproto.server.requestAccountDelete': never,
  'com.atproto.server.getAccountInviteCodes': never,
  'com.atproto.server.requestEmailUpdate': never,
  'com.atproto.server.updateEmail': never,
  'com.atproto.temp.checkSignupQueue': never,

  // Identity.
  'com.atproto.identity.updateHandle': { kind: 'identity', attr: 'handle' },
  'com.atproto.identity.requestPlcOperationSignature': { kind: 'identity', attr: '*' },
  'com.atproto.identity.signPlcOperation': { kind: 'identity', attr: '*' },
  'com.atproto.identity.submitPlcOperation': { kind: 'identity', attr: '*' },
  'com.atproto.identity.getRecommendedDidCredentials': open,

  // AppView methods this PDS answers itself.
  'app.bsky.actor.getPreferences': { kind: 'appview' },
  'app.bsky.actor.putPreferences': { kind: 'appview' },
  'app.bsky.feed.getFeed': { kind: 'appview', alsoNeeds: ['app.bsky.feed.getFeedSkeleton'] },
}

const RULES = new Map(Object.entries(OAUTH_METHOD_RULES).map(([nsid, rule]) => [nsid.toLowerCase(), rule]))

export interface OAuthCallContext {
  nsid: string
  /** True when the method is not served here and goes to the forwarding fallback. */
  forwarded: boolean
  /** The client's `atproto-proxy` header, if any. */
  proxyHeader: string | null
  /** `did#bsky_appview` of the configured AppView, or null when forwarding is off. */
  appViewAud: string | null
}

/** Throws the reference's 403 unless this OAuth credential may call the method at all. */
export const assertOAuthMayCall = (auth: AccessCredentials, call: OAuthCallContext): void => {
  const grant = auth.oauth
  if (!grant) return
  const rule = RULES.get(call.nsid.toLowerCase()) ?? (call.forwarded ? handler : never)
  const { permissions } = grant
  switch (rule.kind) {
    case 'open':
    case 'handler':
      return
    case 'never':
      throw new ForbiddenError('OAuth credentials are not supported for this endpoint')
    case 'account': {
      const match = { attr: rule.attr, action: rule.action }
      if (!permissions.allowsAccount(match)) throw missingScope(AccountPermission.scopeNeededFor(match))
      return
    }
    case 'identity':
      if (!permissions.allowsIdentity({ attr: rule.attr })) throw missingScope(IdentityPermission.scopeNeededFor({ attr: rule.attr }))
      return
    case 'appview': {
      const aud = call.proxyHeader || call.appViewAud || '*'
      for (const lxm of [call.nsid, ...(rule.alsoNeeds ?? [])]) {
        if (!permissions.allowsRpc({ lxm, aud })) throw missingScope(RpcPermission.scopeNeededFor({ lxm, aud }))
      }
    }
  }
}
