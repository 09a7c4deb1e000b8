/**
 * Credentials: what a verified request may do, asked as questions.
 *
 * Handlers never compare token scopes. They ask the credential ("may you
 * write to this collection?", "may you call this method at this service?",
 * "may you manage the account?"), so each kind of credential (a password
 * session, an app password, an OAuth token with granular permissions)
 * answers the same questions its own way without any handler changing.
 */
import { BlobPermission, RepoPermission, RpcPermission, type ScopePermissionsTransition } from '@atproto/oauth-scopes'
import { ForbiddenError, type XrpcError } from '../errors'
import { isIn, PRIVILEGED_METHODS } from './method-classes'
import { AuthScope } from './scope'

export type RecordAction = 'create' | 'update' | 'delete'

/** What an OAuth session was granted (src/auth/oauth-credentials.ts). */
export interface OAuthGrant {
  clientId: string
  scope: string
  permissions: ScopePermissionsTransition
}

/** A credential that may call ordinary methods on the owner's behalf. */
export interface AccessCredentials {
  readonly type: 'access'
  /** Which kind of session, for the request log. */
  readonly kind: 'password' | 'app-password' | 'oauth'
  readonly did: string
  /** Set for an OAuth session: its client and scope (the per-method table checks it). */
  readonly oauth: OAuthGrant | null
  /** A password session's id, checked to be live on every call (src/auth/live-session.ts); null otherwise. */
  readonly sessionId: string | null
  /** Account management: app passwords, email, handle, PLC, (de)activation, personal details. */
  mayManageAccount(): boolean
  /** Writing records of `collection` (creates, updates and deletes). */
  mayWriteRecord(collection: string, action: RecordAction): boolean
  /** Uploading a blob of this MIME type. */
  mayUploadBlob(mimeType: string): boolean
  /** Calling `lxm` at the service `aud` (`did#service`, as the proxy header names it). */
  mayCallService(lxm: string, aud: string): boolean
  /** Seeing the account's email address. */
  mayReadEmail(): boolean
}

/**
 * A service token from getServiceAuth addressed to this PDS for one method
 * (the video service uploading the owner's video): good for that method only.
 */
export interface ServiceCredentials {
  readonly type: 'service'
  readonly did: string
  readonly lxm: string
}

/** A refresh token: good only for refreshing or ending its own session. */
export interface RefreshCredentials {
  readonly type: 'refresh'
  readonly did: string
  readonly tokenId: string
}

/**
 * A password session (the owner's password or an app password), as the
 * reference PDS scopes them: app passwords cannot manage the account, and
 * only privileged ones reach direct messages.
 */
export const sessionCredentials = (did: string, scope: AuthScope, sessionId: string | null): AccessCredentials => {
  const full = scope === AuthScope.Access
  const privileged = full || scope === AuthScope.AppPassPrivileged
  return {
    type: 'access',
    kind: full ? 'password' : 'app-password',
    did,
    oauth: null,
    sessionId,
    mayManageAccount: () => full,
    mayWriteRecord: () => true,
    mayUploadBlob: () => true,
    mayCallService: (lxm) => privileged || !isIn(PRIVILEGED_METHODS, lxm),
    mayReadEmail: () => true,
  }
}

/**
 * The reference PDS's refusal when an OAuth session's permissions do not
 * cover a call: 403 `Missing required scope "<scope>"` (@atproto/oauth-scopes'
 * ScopeMissingError), naming the scope that would have allowed it.
 */
export const missingScope = (scope: string): ForbiddenError => new ForbiddenError(`Missing required scope "${scope}"`, 'ScopeMissingError')

/** Throws unless `auth` may write each of these records. */
export const assertMayWriteRecords = (auth: AccessCredentials, writes: { collection: string; action: RecordAction }[]): void => {
  for (const { collection, action } of writes) {
    if (!auth.mayWriteRecord(collection, action)) throw missingScope(RepoPermission.scopeNeededFor({ collection, action }))
  }
}

/** Throws unless `auth` may upload a blob of this MIME type. */
export const assertMayUploadBlob = (auth: AccessCredentials | ServiceCredentials, mimeType: string): void => {
  if (auth.type === 'access' && !auth.mayUploadBlob(mimeType)) throw missingScope(BlobPermission.scopeNeededFor({ mime: mimeType }))
}

/**
 * Throws unless `auth` may call `lxm` at `aud`: an OAuth session's refusal
 * names the missing `rpc:` scope; a password session's is the route's own
 * (`refusal`), as the reference answers each.
 */
export const assertMayCallService = (auth: AccessCredentials, lxm: string, aud: string, refusal: () => XrpcError): void => {
  if (auth.mayCallService(lxm, aud)) return
  throw auth.oauth ? missingScope(RpcPermission.scopeNeededFor({ lxm, aud })) : refusal()
}
