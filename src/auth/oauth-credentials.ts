/**
 * OAuth access tokens at the resource server: `Authorization: DPoP <token>`
 * verified by src/oauth/resource.ts becomes an `AccessCredentials` whose
 * answers come from the session's granted scope (`@atproto/oauth-scopes`,
 * with the transitional scopes: `transition:generic` behaves like an app
 * password, `transition:chat.bsky` reaches chat, `transition:email` reads the
 * email). OAuth errors become the 401 answers clients act on: a
 * `WWW-Authenticate: DPoP ... error="use_dpop_nonce"` challenge makes them
 * retry with the `DPoP-Nonce`, `error="invalid_token"` makes them refresh.
 */
import { ScopePermissionsTransition } from '@atproto/oauth-scopes'
import type { Db } from '../db/client'
import type { Config } from '../env'
import { XrpcError } from '../errors'
import { dpopNonces } from '../oauth/context'
import { OAuthError } from '../oauth/errors'
import { authenticateDpopRequest, type DpopAuthorization } from '../oauth/resource'
import type { AccessCredentials } from './credentials'

/** The credential of an OAuth session. It never manages the account, whatever its scope. */
export const oauthCredentials = (authz: DpopAuthorization): AccessCredentials => {
  const permissions = new ScopePermissionsTransition(authz.scope.split(' '))
  return {
    type: 'access',
    kind: 'oauth',
    did: authz.did,
    oauth: { clientId: authz.clientId, scope: authz.scope, permissions },
    // Its token is looked up on every call: revocation needs no session check.
    sessionId: null,
    mayManageAccount: () => false,
    mayWriteRecord: (collection, action) => permissions.allowsRepo({ collection, action }),
    mayUploadBlob: (mime) => permissions.allowsBlob({ mime }),
    mayCallService: (lxm, aud) => permissions.allowsRpc({ lxm, aud }),
    mayReadEmail: () => permissions.allowsAccount({ attr: 'email', action: 'read' }),
  }
}

/** An OAuth error as the resource server answers it: 401, `{error, message}`, and the DPoP challenge. */
const resourceError = (err: OAuthError): XrpcError => {
  const challenge = new OAuthError(401, err.challenge || err.error === 'use_dpop_nonce' ? err.error : 'invalid_token', err.description, true)
  return new XrpcError(401, challenge.description, challenge.error, { 'www-authenticate': challenge.wwwAuthenticate })
}

export interface DpopRequestContext {
  config: Config
  db: Db
  request: Request
  token: string
  /** Receives the `DPoP-Nonce` header, which every answer to a DPoP request carries. */
  setHeader(name: string, value: string): void
}

/** Verifies a DPoP-bound access token and its proof; the credential of its session. */
export const verifyOAuthAccess = async (req: DpopRequestContext): Promise<AccessCredentials> => {
  const now = Date.now()
  const nonces = await dpopNonces(req.config)
  // Before verifying, so errors carry it too: a client without a nonce learns it here.
  req.setHeader('DPoP-Nonce', await nonces.next(now))
  try {
    const authz = await authenticateDpopRequest(
      { config: req.config, db: req.db, nonces, now },
      {
        token: req.token,
        proof: req.request.headers.get('dpop'),
        method: req.request.method,
        // As clients address us: the configured origin, never the Host header.
        url: `${req.config.serviceUrl}${new URL(req.request.url).pathname}`,
      },
    )
    return oauthCredentials(authz)
  } catch (err) {
    if (err instanceof OAuthError) throw resourceError(err)
    throw err
  }
}
