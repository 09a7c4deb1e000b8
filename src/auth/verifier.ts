/**
 * The one authentication path. Every route declares an `AuthPolicy`: what it
 * accepts and what the handler then receives (`AccessCredentials`,
 * `ServiceCredentials`, `RefreshCredentials` or null). The router and the
 * forwarding fallback both run the route's policy; no handler reads the
 * Authorization header itself.
 *
 * Errors are the reference PDS's: no header → 401 AuthMissing; bad,
 * wrong-type or wrong-scope token → 400 InvalidToken; expired → 400
 * ExpiredToken. A refresh token is refused where an access token is needed
 * and vice versa (the JWT `typ` differs). A new kind of credential joins by
 * adding its scheme to `verifyAccess` (or a policy of its own), not by
 * touching handlers.
 */
import * as jose from 'jose'
import type { KvCache } from '../cache/kv-cache'
import type { Config } from '../env'
import { AuthRequiredError, InvalidRequestError } from '../errors'
import { sessionCredentials, type AccessCredentials, type RefreshCredentials, type ServiceCredentials } from './credentials'
import { ACCESS_STANDARD, AuthScope } from './scope'
import { atprotoSigningKey, resolveDid } from '../identity/resolver'
import { isServiceJwt, verifyServiceJwt } from './service-jwt'

/** What a policy sees of a request. */
export interface AuthRequest {
  config: Config
  /** For resolving the DID documents whose keys sign service tokens. */
  cache: KvCache
  /** The Authorization header, if any. */
  authorization: string | null
  /** The XRPC method called (service tokens are bound to one). */
  nsid: string
}

/** How a route authenticates, and what its handler receives. */
export type AuthPolicy<C> = (req: AuthRequest) => Promise<C>

/** Splits "<type> <token>"; mirrors the reference's parsing and messages. */
const bearerToken = (header: string | null): string | null => {
  if (!header) return null
  const parts = header.split(' ')
  if (parts.length !== 2) throw new InvalidRequestError('Malformed authorization header', 'InvalidToken')
  const type = parts[0].toUpperCase()
  if (type === 'BEARER') return parts[1]
  if (type === 'BASIC' || type === 'DPOP') throw new InvalidRequestError('Unexpected authorization type', 'InvalidToken')
  throw new InvalidRequestError(`Unsupported authorization type: ${parts[0]}`, 'InvalidToken')
}

const verifySessionJwt = async (
  cfg: Config,
  token: string,
  opts: { typ: string; scopes: readonly string[]; allowExpired?: boolean },
): Promise<jose.JWTPayload & { sub: string }> => {
  let payload: jose.JWTPayload
  try {
    ;({ payload } = await jose.jwtVerify(token, cfg.jwtSecret, {
      audience: cfg.serviceDid,
      typ: opts.typ,
      algorithms: ['HS256'],
      clockTolerance: opts.allowExpired ? Number.MAX_SAFE_INTEGER : undefined,
    }))
  } catch (err) {
    if (err instanceof jose.errors.JWTExpired) throw new InvalidRequestError('Token has expired', 'ExpiredToken')
    throw new InvalidRequestError('Token could not be verified', 'InvalidToken')
  }
  if (payload.lxm !== undefined || payload.cnf !== undefined) throw new InvalidRequestError('Malformed token', 'InvalidToken')
  if (typeof payload.sub !== 'string' || !payload.sub.startsWith('did:')) throw new InvalidRequestError('Malformed token', 'InvalidToken')
  // One account lives here: a token for any other subject is invalid everywhere, whoever signed it.
  if (payload.sub !== cfg.did) throw new InvalidRequestError('Token is not for the account of this PDS', 'InvalidToken')
  if (typeof payload.scope !== 'string' || !opts.scopes.includes(payload.scope)) {
    throw new InvalidRequestError('Bad token scope', 'InvalidToken')
  }
  return payload as jose.JWTPayload & { sub: string }
}

/** Any access credential: today a password or app-password session token. */
const verifyAccess = async (req: AuthRequest): Promise<AccessCredentials> => {
  const token = bearerToken(req.authorization)
  if (!token) throw new AuthRequiredError(undefined, 'AuthMissing')
  const payload = await verifySessionJwt(req.config, token, { typ: 'at+jwt', scopes: ACCESS_STANDARD })
  return sessionCredentials(payload.sub, payload.scope as AuthScope)
}

const verifyRefresh = async (req: AuthRequest, allowExpired: boolean): Promise<RefreshCredentials> => {
  const token = bearerToken(req.authorization)
  if (!token) throw new AuthRequiredError(undefined, 'AuthMissing')
  const payload = await verifySessionJwt(req.config, token, { typ: 'refresh+jwt', scopes: [AuthScope.Refresh], allowExpired })
  if (typeof payload.jti !== 'string') throw new AuthRequiredError('Unexpected missing refresh token id', 'MissingTokenId')
  return { type: 'refresh', did: payload.sub, tokenId: payload.jti }
}

/** Public methods. */
export const noAuth: AuthPolicy<null> = async () => null

/** Any session (app passwords included). */
export const accessAuth: AuthPolicy<AccessCredentials> = verifyAccess

/** Account management: a credential that may manage the account (the owner's password session). */
export const fullAccessAuth: AuthPolicy<AccessCredentials> = async (req) => {
  const credentials = await verifyAccess(req)
  if (!credentials.mayManageAccount()) throw new InvalidRequestError('Bad token scope', 'InvalidToken')
  return credentials
}

/** Credentials if an access token is present, null if none is (a present but bad one is an error). */
export const optionalAccessAuth: AuthPolicy<AccessCredentials | null> = async (req) =>
  req.authorization ? verifyAccess(req) : null

/**
 * An access token, or a service token addressed to this PDS for exactly the
 * method called and signed with the account's key (how the video service
 * uploads the owner's video with a token from getServiceAuth).
 */
export const accessOrServiceAuth: AuthPolicy<AccessCredentials | ServiceCredentials> = async (req) => {
  const token = bearerToken(req.authorization)
  if (token && isServiceJwt(token)) {
    const { iss } = await verifyServiceJwt(req.config, token, req.nsid, async () => req.config.signingKey.did())
    return { type: 'service', did: iss, lxm: req.nsid }
  }
  return verifyAccess(req)
}

/**
 * createAccount for an account migrated in: no credential, or a service token
 * from the old PDS (getServiceAuth there), issued for this account and
 * signed by the key its DID document lists right now.
 */
export const createAccountAuth: AuthPolicy<ServiceCredentials | null> = async (req) => {
  if (!req.authorization) return null
  const token = bearerToken(req.authorization)
  if (!token) throw new AuthRequiredError('Invalid authorization header')
  const { iss } = await verifyServiceJwt(req.config, token, req.nsid, async () => {
    const key = atprotoSigningKey(await resolveDid(req.config, req.cache, req.config.did, { fresh: true }))
    if (!key) throw new Error('no #atproto key in the DID document')
    return key
  })
  return { type: 'service', did: iss, lxm: req.nsid }
}

/** A live refresh token (refreshSession). */
export const refreshAuth: AuthPolicy<RefreshCredentials> = (req) => verifyRefresh(req, false)

/** A refresh token, even expired (deleteSession ends a session whatever its age). */
export const anyRefreshAuth: AuthPolicy<RefreshCredentials> = (req) => verifyRefresh(req, true)
