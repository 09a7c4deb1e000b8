/**
 * The discovery documents (RFC 8414 authorization server metadata, RFC 9728
 * protected resource metadata) as atproto clients require them: the issuer is
 * the PDS's own origin, which is both the authorization server and the only
 * resource server. The fields follow `@atproto/oauth-provider`'s document,
 * minus what we do not implement (request objects, form_post, ES256K, which
 * jose cannot verify in workerd: Node clients would pick it if offered).
 */
import { SIGNING_ALGS } from './errors'

/** The static scopes (granular permissions are accepted too; they are not enumerable). */
export const SUPPORTED_SCOPES = ['atproto', 'transition:email', 'transition:generic', 'transition:chat.bsky'] as const

export const oauthEndpoints = (issuer: string) => ({
  authorization: `${issuer}/oauth/authorize`,
  token: `${issuer}/oauth/token`,
  par: `${issuer}/oauth/par`,
  revocation: `${issuer}/oauth/revoke`,
  jwks: `${issuer}/oauth/jwks`,
})

/** `/.well-known/oauth-authorization-server` for `issuer` (an origin without trailing slash). */
export const authorizationServerMetadata = (issuer: string) => {
  const endpoints = oauthEndpoints(issuer)
  return {
    issuer,
    request_uri_parameter_supported: true,
    require_request_uri_registration: true,
    scopes_supported: [...SUPPORTED_SCOPES],
    subject_types_supported: ['public'],
    response_types_supported: ['code'],
    response_modes_supported: ['query', 'fragment'],
    grant_types_supported: ['authorization_code', 'refresh_token'],
    code_challenge_methods_supported: ['S256'],
    ui_locales_supported: ['en-US'],
    display_values_supported: ['page', 'popup', 'touch'],
    authorization_response_iss_parameter_supported: true,
    jwks_uri: endpoints.jwks,
    authorization_endpoint: endpoints.authorization,
    token_endpoint: endpoints.token,
    token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: [...SIGNING_ALGS],
    revocation_endpoint: endpoints.revocation,
    pushed_authorization_request_endpoint: endpoints.par,
    require_pushed_authorization_requests: true,
    dpop_signing_alg_values_supported: [...SIGNING_ALGS],
    protected_resources: [issuer],
    client_id_metadata_document_supported: true,
    prompt_values_supported: ['none', 'login', 'consent'],
  }
}

/** `/.well-known/oauth-protected-resource`: this origin, protected by exactly one server, itself. */
export const protectedResourceMetadata = (origin: string) => ({
  resource: origin,
  authorization_servers: [origin],
  scopes_supported: [] as string[],
  bearer_methods_supported: ['header'],
  resource_documentation: 'https://atproto.com',
})
