/**
 * Client metadata validation (pure): the schema of `@atproto/oauth-types`
 * first, then the rules an atproto authorization server adds (atproto OAuth
 * spec §Clients; `@atproto/oauth-provider`'s ClientManager): DPoP-bound
 * tokens, `atproto` in the scope, public (`none`) or `private_key_jwt`
 * authentication only, redirect URIs by application type, and the loopback
 * development client's own restrictions. Also the redirect-URI matching the
 * authorization request uses.
 */
import {
  atprotoLoopbackClientMetadata,
  isOAuthClientIdLoopback,
  oauthClientIdDiscoverableSchema,
  oauthClientMetadataSchema,
  type OAuthClientMetadata,
} from '@atproto/oauth-types'
import { invalidClientMetadata, OAuthError, SIGNING_ALGS } from './errors'
import { isLocalOnlyHostname } from './safe-fetch'

export type ClientKind = 'loopback' | 'discoverable'

const invalidRedirectUri = (description: string): OAuthError => new OAuthError(400, 'invalid_redirect_uri', description)
const invalidClientId = (description: string): OAuthError => new OAuthError(400, 'invalid_client_id', description)

/** The schema's verdict; its refinements throw on strings that are not URLs, which is a "no" too. */
const discoverableIssues = (clientId: string): string | null => {
  try {
    const parsed = oauthClientIdDiscoverableSchema.safeParse(clientId)
    return parsed.success ? null : parsed.error.issues.map((i) => i.message).join(', ')
  } catch {
    return 'not a URL'
  }
}

/**
 * Which kind of client an id names. As the reference: an id that is neither
 * kind is `invalid_client_metadata`; a well-formed one on a local-only host
 * name is `invalid_client_id`.
 */
export const clientKind = (clientId: string): ClientKind => {
  if (isOAuthClientIdLoopback(clientId)) return 'loopback'
  const issues = discoverableIssues(clientId)
  if (issues !== null) throw invalidClientMetadata(`Invalid client ID "${clientId}": ${issues}`)
  if (isLocalOnlyHostname(new URL(clientId).hostname)) throw invalidClientId(`Client ID "${clientId}" is not on a public host name`)
  return 'discoverable'
}

/** The metadata of a loopback development client, derived from its id (nothing is fetched). */
export const loopbackClientMetadata = (clientId: string): unknown => {
  try {
    return atprotoLoopbackClientMetadata(clientId)
  } catch (err) {
    throw invalidClientMetadata(`Invalid loopback client ID "${clientId}": ${(err as Error).message}`)
  }
}

const KEY_PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth']

/** A public JWKS, or an error message. */
export const checkPublicJwks = (jwks: unknown): string | null => {
  const keys = (jwks as { keys?: unknown })?.keys
  if (!Array.isArray(keys) || keys.length === 0) return 'a JWKS needs a non-empty "keys" array'
  for (const key of keys) {
    if (!key || typeof key !== 'object' || typeof (key as { kty?: unknown }).kty !== 'string') return 'every key needs a "kty"'
    if (KEY_PRIVATE_MEMBERS.some((m) => m in key)) return 'the JWKS must hold public keys only'
  }
  return null
}

/** Checks one redirect URI against the application type (and, for private-use schemes, the client's host). */
const checkRedirectUri = (uri: string, meta: OAuthClientMetadata, clientId: string, kind: ClientKind): void => {
  const url = new URL(uri)
  if (url.username || url.password) throw invalidRedirectUri(`Redirect URI ${uri} must not contain credentials`)
  const native = meta.application_type === 'native'
  if (url.protocol === 'http:' || url.protocol === 'https:') {
    if (url.hostname === 'localhost') throw invalidRedirectUri(`Redirect URI ${uri}: use a loopback IP (127.0.0.1 or [::1]), not "localhost" (RFC 8252)`)
    if (url.hostname === '127.0.0.1' || url.hostname === '[::1]') {
      if (!native) throw invalidRedirectUri(`Loopback redirect URI ${uri} is only allowed for native apps`)
      if (url.protocol !== 'http:') throw invalidRedirectUri(`Loopback redirect URI ${uri} must use http:`)
      return
    }
    if (url.protocol === 'http:') throw invalidRedirectUri(`Redirect URI ${uri} must use https:`)
    if (isLocalOnlyHostname(url.hostname)) throw invalidRedirectUri(`Redirect URI ${uri} is not on a public host name`)
    return
  }
  if (url.protocol.includes('.')) {
    if (!native) throw invalidRedirectUri(`Private-use URI scheme redirect URI ${uri} is only allowed for native apps`)
    if (kind === 'discoverable') {
      const reversed = new URL(clientId).hostname.split('.').reverse().join('.')
      if (url.protocol !== `${reversed}:`) throw invalidRedirectUri(`Private-use URI scheme of ${uri} must be "${reversed}:" (the client ID's host reversed)`)
    }
    return
  }
  throw invalidRedirectUri(`Redirect URI ${uri} has an unsupported scheme`)
}

const duplicates = (values: readonly string[]): boolean => new Set(values).size !== values.length

/**
 * Validates `input` as the metadata of `clientId`. Throws
 * `invalid_client_metadata` (or `invalid_redirect_uri`) with the reason.
 */
export const validateClientMetadata = (clientId: string, kind: ClientKind, input: unknown): OAuthClientMetadata => {
  const parsed = oauthClientMetadataSchema.safeParse(input)
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'metadata'}: ${i.message}`).join('; ')
    throw invalidClientMetadata(`Invalid client metadata: ${issues}`)
  }
  const meta = parsed.data
  const fail = (why: string): never => {
    throw invalidClientMetadata(why)
  }
  if (meta.jwks && meta.jwks_uri) fail('jwks and jwks_uri are mutually exclusive')
  for (const unsupported of ['default_max_age', 'userinfo_signed_response_alg', 'id_token_signed_response_alg', 'userinfo_encrypted_response_alg'] as const) {
    if ((meta as Record<string, unknown>)[unsupported] !== undefined) fail(`${unsupported} is not supported`)
  }
  if (meta.authorization_encrypted_response_enc) fail('Encrypted authorization responses are not supported')
  if (meta.tls_client_certificate_bound_access_tokens) fail('Mutual-TLS bound access tokens are not supported')
  if (meta.client_id !== undefined && meta.client_id !== clientId) fail(`client_id "${meta.client_id}" does not match the document's URL`)
  if (kind === 'discoverable' && meta.client_id === undefined) fail('client_id is required in the metadata document')
  if (meta.subject_type !== undefined && meta.subject_type !== 'public') fail('Only "public" subject_type is supported')

  const scopes = meta.scope?.split(' ') ?? []
  if (!scopes.includes('atproto')) fail('The "atproto" scope is required in the client metadata')
  if (duplicates(scopes)) fail('Duplicate scope values in the client metadata')

  if (duplicates(meta.grant_types)) fail('Duplicate grant_types')
  for (const grant of meta.grant_types) {
    if (grant !== 'authorization_code' && grant !== 'refresh_token') fail(`Grant type "${grant}" is not supported`)
  }
  if (!meta.response_types.includes('code')) fail('response_types must include "code"')
  if (!meta.grant_types.includes('authorization_code')) fail('grant_types must include "authorization_code"')
  if (meta.authorization_details_types?.length) fail('authorization_details_types are not supported')
  if (meta.dpop_bound_access_tokens !== true) fail('dpop_bound_access_tokens must be true (atproto requires DPoP)')

  const method = meta.token_endpoint_auth_method
  if (method === 'none') {
    if (meta.token_endpoint_auth_signing_alg) fail('token_endpoint_auth_signing_alg must not be set with token_endpoint_auth_method "none"')
  } else if (method === 'private_key_jwt') {
    if (!meta.jwks && !meta.jwks_uri) fail('private_key_jwt needs jwks or jwks_uri')
    const alg = meta.token_endpoint_auth_signing_alg
    if (!alg) fail('private_key_jwt needs token_endpoint_auth_signing_alg')
    if (!(SIGNING_ALGS as readonly string[]).includes(alg as string)) fail(`token_endpoint_auth_signing_alg "${alg}" is not supported (use ES256)`)
    if (meta.jwks) {
      const problem = checkPublicJwks(meta.jwks)
      if (problem) fail(`jwks: ${problem}`)
    }
  } else {
    fail(`token_endpoint_auth_method "${method}" is not supported (use "none" or "private_key_jwt")`)
  }
  if (meta.application_type === 'native' && method !== 'none') fail('Native clients must use token_endpoint_auth_method "none"')

  if (meta.client_uri) {
    const clientUri = new URL(meta.client_uri)
    if (isLocalOnlyHostname(clientUri.hostname)) fail('client_uri is not on a public host name')
    if (kind === 'loopback') fail('Loopback clients must not have a client_uri')
    const idUrl = new URL(clientId)
    if (clientUri.origin !== idUrl.origin) fail('client_uri must have the same origin as the client ID')
    if (!idUrl.pathname.startsWith(clientUri.pathname.endsWith('/') ? clientUri.pathname : `${clientUri.pathname}/`) && clientUri.pathname !== idUrl.pathname) {
      fail('client_uri must be a parent of the client ID')
    }
  }
  if (kind === 'loopback') {
    if (meta.application_type !== 'native') fail('Loopback clients must be native applications')
    if (method !== 'none') fail('Loopback clients must use token_endpoint_auth_method "none"')
  }
  for (const uri of meta.redirect_uris) checkRedirectUri(uri, meta, clientId, kind)
  return meta
}

/**
 * Whether `requested` may be used for a client that registered
 * `registered`: the same string, or, for a registered loopback URI without a
 * port, the same URI on any port (native apps listen on ephemeral ports).
 */
export const redirectUriMatches = (registered: string, requested: string): boolean => {
  if (registered === requested) return true
  let reg: URL
  let req: URL
  try {
    reg = new URL(registered)
    req = new URL(requested)
  } catch {
    return false
  }
  const loopback = reg.hostname === 'localhost' || reg.hostname === '127.0.0.1' || reg.hostname === '[::1]'
  if (!loopback || reg.port !== '') return false
  return (
    reg.protocol === req.protocol &&
    reg.hostname === req.hostname &&
    reg.pathname === req.pathname &&
    reg.search === req.search &&
    reg.hash === req.hash &&
    reg.username === req.username &&
    reg.password === req.password
  )
}
