/**
 * The pushed authorization request (RFC 9126), the only way a flow starts
 * here (atproto requires PAR): client credentials and request parameters are
 * parsed with `@atproto/oauth-types`' schemas, the DPoP proof checked (atproto
 * clients always send one here, so it is required), the client loaded and
 * authenticated, and the request validated in the reference provider's order
 * before it is stored for five minutes.
 */
import {
  oauthAuthorizationRequestParametersSchema,
  oauthClientCredentialsSchema,
  type OAuthAuthorizationRequestParameters,
} from '@atproto/oauth-types'
import { claimOnce, insertRequest, isClaimed } from '../db/oauth'
import { authenticateClient } from './client-auth'
import { redirectUriMatches } from './client-metadata'
import { loadClient } from './clients'
import { iso, type OAuthContext } from './context'
import { acceptDpopProof } from './dpop'
import { invalidClient, invalidRequest, OAuthError } from './errors'
import { randomToken } from './keys'
import { checkRequestedScope, resolveIncludes } from './scopes'

export const REQUEST_URI_PREFIX = 'urn:ietf:params:oauth:request_uri:'
/** A pushed request lives this long (and is extended by the owner's sign-in). */
export const REQUEST_LIFETIME_MS = 5 * 60 * 1000

/** What a request keeps of its parameters, validated and with defaults applied. */
export interface StoredParameters {
  client_id: string
  redirect_uri: string
  scope: string
  state: string
  code_challenge: string
  response_mode: 'query' | 'fragment'
  login_hint?: string
  prompt?: 'none' | 'login' | 'consent'
}

export interface DpopInput {
  proof: string | null
  method: string
  url: string
}

/** Records DPoP proofs and other one-time values in D1. */
export const claimer =
  (ctx: OAuthContext) =>
  (key: string, until: number): Promise<boolean> =>
    claimOnce(ctx.db, key, iso(until), iso(ctx.now))

/** The key under which a used PKCE challenge is remembered. */
export const challengeKey = (challenge: string): string => `code-challenge:${challenge}`

const issues = (error: { issues: { path: (string | number)[]; message: string }[] }): string =>
  error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; ')

/** The owner's handle or DID: the only account a request may name. */
const isOwner = (ctx: OAuthContext, hint: string): boolean => {
  const value = hint.trim().replace(/^@/, '').toLowerCase()
  return value === ctx.config.handle || value === ctx.config.did.toLowerCase()
}

/** Validates the parameters against this server and the client (reference order); returns what is stored. */
const validateParameters = async (
  ctx: OAuthContext,
  params: OAuthAuthorizationRequestParameters,
  client: Awaited<ReturnType<typeof loadClient>>,
  confidential: boolean,
): Promise<StoredParameters> => {
  for (const unsupported of ['claims', 'id_token_hint', 'nonce'] as const) {
    if (params[unsupported] !== undefined) throw invalidRequest(`Unsupported "${unsupported}" parameter`)
  }
  if (params.authorization_details !== undefined) throw invalidRequest('authorization_details are not supported')
  if (params.response_type !== 'code') throw new OAuthError(400, 'unsupported_response_type', `Unsupported response_type "${params.response_type}"`)
  if (params.client_id !== client.id) throw invalidRequest('The client_id parameter does not match the authenticated client')
  if (!client.metadata.scope) throw invalidRequest('Client has no declared scopes in its metadata')
  const scope = checkRequestedScope(params.scope, client.metadata.scope)

  const registered = client.metadata.redirect_uris
  let redirectUri: string
  if (params.redirect_uri === undefined) {
    if (registered.length !== 1) throw invalidRequest('redirect_uri is required')
    redirectUri = registered[0]
  } else {
    if (!registered.some((r) => redirectUriMatches(r, params.redirect_uri as string))) {
      throw invalidRequest('redirect_uri does not match any of the client\'s registered redirect URIs')
    }
    redirectUri = params.redirect_uri
  }

  if (!params.code_challenge) throw invalidRequest('Use of PKCE is required')
  if (params.code_challenge_method !== 'S256') throw invalidRequest('atproto requires use of "S256" code_challenge_method')
  if (!/^[A-Za-z0-9_-]{43}$/.test(params.code_challenge)) throw invalidRequest('Invalid code_challenge (base64url SHA-256 expected)')
  if (await isClaimed(ctx.db, challengeKey(params.code_challenge), iso(ctx.now))) throw invalidRequest('This code_challenge was already used')
  if (!params.state) throw invalidRequest('The "state" parameter is required')
  if (params.response_mode === 'form_post') throw invalidRequest('response_mode "form_post" is not supported (use query or fragment)')
  const prompt = params.prompt
  if (prompt === 'select_account' || prompt === 'create') throw invalidRequest(`prompt "${prompt}" is not supported by this single-account server`)
  if (prompt === 'none' && !confidential) throw invalidRequest('Public clients are not allowed to use silent-sign-on')
  if (params.login_hint !== undefined && !isOwner(ctx, params.login_hint)) {
    throw invalidRequest(`This server hosts only @${ctx.config.handle}; it cannot sign in ${params.login_hint}`)
  }
  // Every permission set must resolve now: a clear error here beats a broken consent page.
  await resolveIncludes(ctx, scope)

  return {
    client_id: client.id,
    redirect_uri: redirectUri,
    scope,
    state: params.state,
    code_challenge: params.code_challenge,
    response_mode: params.response_mode ?? 'query',
    ...(params.login_hint !== undefined ? { login_hint: params.login_hint } : {}),
    ...(prompt !== undefined ? { prompt } : {}),
  }
}

/** POST /oauth/par: stores the request; answers what the client puts in the authorization URL. */
export const pushAuthorizationRequest = async (
  ctx: OAuthContext,
  body: Record<string, unknown>,
  dpop: DpopInput,
): Promise<{ request_uri: string; expires_in: number }> => {
  const credentials = oauthClientCredentialsSchema.safeParse(body)
  if (!credentials.success) throw invalidClient(`Client credentials missing or invalid: ${issues(credentials.error)}`)
  if ('request' in body) throw invalidRequest('Request objects ("request" parameter) are not supported')
  const params = oauthAuthorizationRequestParametersSchema.safeParse(body)
  if (!params.success) throw invalidRequest(`Invalid authorization request: ${issues(params.error)}`)

  const proof = await acceptDpopProof({ ...dpop, nonces: ctx.nonces, now: ctx.now }, claimer(ctx))
  const client = await loadClient(ctx, credentials.data.client_id)
  const clientAuth = await authenticateClient(ctx, client, credentials.data, proof.jkt)
  if (params.data.dpop_jkt !== undefined && params.data.dpop_jkt !== proof.jkt) throw new OAuthError(401, 'invalid_token', 'Invalid DPoP key binding', true)
  const parameters = await validateParameters(ctx, params.data, client, clientAuth.method !== 'none')

  const id = randomToken('req-', 16)
  const expiresAt = ctx.now + REQUEST_LIFETIME_MS
  await insertRequest(ctx.db, {
    id,
    clientId: client.id,
    clientAuth: JSON.stringify(clientAuth),
    parameters: JSON.stringify(parameters),
    dpopJkt: proof.jkt,
    expiresAt: iso(expiresAt),
  })
  return { request_uri: `${REQUEST_URI_PREFIX}${id}`, expires_in: Math.floor((expiresAt - ctx.now) / 1000) - 1 }
}
