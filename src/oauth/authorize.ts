/**
 * The authorization endpoint's domain side: finding the pushed request a
 * browser arrives with, and ending it with the owner's answer. The pages
 * only read the request on GET (a link preview fetching the URL changes
 * nothing); it is tied to a browser, approved or denied only by a POST.
 * The answer goes back to the client as RFC 9207 `iss`, then `state`, then
 * `code` or `error`, in the query or fragment the client asked for, with a
 * 303 (src/http).
 */
import { approveRequest, bindRequestToDevice, deletePendingRequest, getRequest, type OAuthRequestRow } from '../db/oauth'
import { upsertGrant } from '../db/oauth-account'
import { clientDisplayName, loadClient, type OAuthClient } from './clients'
import { iso, type OAuthContext } from './context'
import { OAuthError } from './errors'
import { hashSecret, randomToken } from './keys'
import { REQUEST_LIFETIME_MS, REQUEST_URI_PREFIX, type StoredParameters } from './par'

/** A code can be exchanged this long after the owner approved (the spec: minutes). */
export const CODE_LIFETIME_MS = 5 * 60 * 1000

/** A request that cannot be shown: an error page, not a redirect (the client may be unknown). */
export class AuthorizationPageError extends Error {
  override name = 'AuthorizationPageError'
  constructor(
    readonly title: string,
    message: string,
    /** Where the owner can go back to, when the client is known. */
    readonly backTo: string | null = null,
  ) {
    super(message)
  }
}

export interface PendingAuthorization {
  requestId: string
  client: OAuthClient
  params: StoredParameters
  /** The browser the request is tied to, once one signed in to it. */
  deviceId: string | null
}

const REQUEST_ID = /^req-[0-9a-f]{32}$/

const homePage = (client: OAuthClient): string | null => client.metadata.client_uri ?? null

/** The pending request named by the authorization URL's `client_id` and `request_uri`. */
export const loadPendingAuthorization = async (
  ctx: OAuthContext,
  query: { client_id?: string | null; request_uri?: string | null },
): Promise<PendingAuthorization> => {
  const { client_id: clientId, request_uri: requestUri } = query
  if (!clientId || !requestUri) {
    throw new AuthorizationPageError('Invalid sign-in link', 'This link is missing its client_id or request_uri. Start signing in again from the app.')
  }
  const requestId = requestUri.startsWith(REQUEST_URI_PREFIX) ? requestUri.slice(REQUEST_URI_PREFIX.length) : ''
  if (!REQUEST_ID.test(requestId)) throw new AuthorizationPageError('Invalid sign-in link', 'The request_uri of this link is not one this server issues.')
  let client: OAuthClient
  try {
    client = await loadClient(ctx, clientId)
  } catch (err) {
    if (err instanceof OAuthError) throw new AuthorizationPageError('This app cannot sign in', err.description)
    throw err
  }
  const row: OAuthRequestRow | null = await getRequest(ctx.db, requestId)
  const back = homePage(client)
  if (!row || row.clientId !== clientId) {
    throw new AuthorizationPageError('Sign-in request not found', `This sign-in request is unknown or finished. Go back to ${clientDisplayName(client)} and start again.`, back)
  }
  if (row.codeHash !== null) throw new AuthorizationPageError('Already approved', 'This sign-in request was already approved; it cannot be used again.', back)
  if (Date.parse(row.expiresAt) <= ctx.now) {
    throw new AuthorizationPageError('Sign-in request expired', `This sign-in request has expired. Go back to ${clientDisplayName(client)} and start again.`, back)
  }
  return { requestId, client, params: JSON.parse(row.parameters) as StoredParameters, deviceId: row.deviceId }
}

/** Ties the request to a browser that just signed in, and gives the owner five more minutes. */
export const bindToDevice = async (ctx: OAuthContext, pending: PendingAuthorization, deviceId: string): Promise<void> => {
  if (!(await bindRequestToDevice(ctx.db, pending.requestId, deviceId, iso(ctx.now + REQUEST_LIFETIME_MS), iso(ctx.now)))) {
    throw new AuthorizationPageError('Sign-in request unavailable', 'This sign-in request was started in another browser, approved already, or has expired.')
  }
}

/** The URL the browser is sent back to the client with (RFC 9207 `iss` first). */
export const authorizationResponseUrl = (
  issuer: string,
  params: Pick<StoredParameters, 'redirect_uri' | 'state' | 'response_mode'>,
  result: { code: string } | { error: string; error_description: string },
): string => {
  const values = new URLSearchParams()
  values.set('iss', issuer)
  values.set('state', params.state)
  for (const [k, v] of Object.entries(result)) values.set(k, v)
  const url = new URL(params.redirect_uri)
  if (params.response_mode === 'fragment') url.hash = values.toString()
  else for (const [k, v] of values) url.searchParams.set(k, v)
  return url.href
}

/** The owner approved: a single-use code, the grant recorded; returns where to send the browser. */
export const approveAuthorization = async (ctx: OAuthContext, pending: PendingAuthorization, deviceId: string): Promise<string> => {
  const code = randomToken('cod-', 32)
  const approved = await approveRequest(ctx.db, {
    id: pending.requestId,
    deviceId,
    codeHash: await hashSecret(ctx.config, code),
    now: iso(ctx.now),
    codeExpiresAt: iso(ctx.now + CODE_LIFETIME_MS),
  })
  if (!approved) throw new AuthorizationPageError('Sign-in request unavailable', 'This sign-in request was approved already, started in another browser, or has expired.')
  const { metadata } = pending.client
  await upsertGrant(ctx.db, { clientId: pending.client.id, clientName: clientDisplayName(pending.client), clientUri: metadata.client_uri ?? null, scope: pending.params.scope }, iso(ctx.now))
  return authorizationResponseUrl(ctx.config.serviceUrl, pending.params, { code })
}

/** The owner said no: the request is gone and the client hears `access_denied`. */
export const denyAuthorization = async (ctx: OAuthContext, pending: PendingAuthorization, deviceId: string): Promise<string> => {
  const deleted = await deletePendingRequest(ctx.db, pending.requestId, deviceId)
  if (!deleted) throw new AuthorizationPageError('Sign-in request unavailable', 'This sign-in request was approved already or started in another browser.')
  return authorizationResponseUrl(ctx.config.serviceUrl, pending.params, { error: 'access_denied', error_description: 'The user rejected the request' })
}
