/**
 * The OAuth error of the authorization server's endpoints (RFC 6749 §5.2):
 * `{error, error_description}` JSON with a status, and for the errors RFC 9449
 * (DPoP) and RFC 6750 answer with a challenge, a `WWW-Authenticate` header.
 * Codes and statuses follow `@atproto/oauth-provider`, since clients
 * (`@atproto/oauth-client`) branch on them: they retry a DPoP nonce only on
 * `use_dpop_nonce`, and refresh only on `invalid_token` in WWW-Authenticate.
 *
 * Domain code throws these; src/http/oauth-errors.ts turns them into
 * responses, and the resource server (src/auth) into XRPC errors.
 */

/**
 * Every signing algorithm we verify (DPoP proofs, client assertions), in the
 * reference's order: jose in workerd cannot do ES256K, so it is never offered
 * (Node clients would pick it).
 */
export const SIGNING_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'] as const

export class OAuthError extends Error {
  override name = 'OAuthError'
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description: string,
    /** Set for the errors that answer with a `WWW-Authenticate: DPoP …` challenge. */
    readonly challenge = false,
  ) {
    super(description)
  }

  get body(): { error: string; error_description: string } {
    return { error: this.error, error_description: this.description }
  }

  /**
   * `DPoP algs="…", error="…", error_description="…"`. A value that is empty
   * or holds a `"` is left out rather than escaped, as the reference does
   * (clients match `error="…"` with a plain substring test).
   */
  get wwwAuthenticate(): string {
    const params: [string, string][] = [
      ['algs', SIGNING_ALGS.join(' ')],
      ['error', this.error],
      ['error_description', this.description],
    ]
    return `DPoP ${params
      .filter(([, v]) => v !== '' && !v.includes('"'))
      .map(([k, v]) => `${k}="${v}"`)
      .join(', ')}`
  }
}

export const invalidRequest = (description: string): OAuthError => new OAuthError(400, 'invalid_request', description)
export const invalidClient = (description: string): OAuthError => new OAuthError(400, 'invalid_client', description)
export const invalidClientMetadata = (description: string): OAuthError => new OAuthError(400, 'invalid_client_metadata', description)
export const invalidGrant = (description: string): OAuthError => new OAuthError(400, 'invalid_grant', description)
export const invalidScope = (description: string): OAuthError => new OAuthError(400, 'invalid_scope', description)
export const accessDenied = (description: string): OAuthError => new OAuthError(400, 'access_denied', description)
export const invalidDpopProof = (description: string): OAuthError => new OAuthError(401, 'invalid_dpop_proof', description, true)
export const invalidToken = (description: string): OAuthError => new OAuthError(401, 'invalid_token', description, true)

/**
 * The server wants (another) nonce in the proof. 400 at the authorization
 * server; the resource server answers it as a 401 challenge (src/auth).
 */
export class UseDpopNonceError extends OAuthError {
  constructor(description: string) {
    super(400, 'use_dpop_nonce', description)
  }
}
