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
 * and vice versa (the JWT `typ` differs). OAuth sessions join through the
 * `DPoP` scheme in `verifyAccess` (src/auth/oauth-credentials.ts): their 401s
 * are OAuth challenges, and the per-method table (src/auth/oauth-methods.ts)
 * decides what they may call at all before any handler runs.
 */
import * as jose from 'jose'
import type { KvCache } from '../cache/kv-cache'
import type { Db } from '../db/client'
import type { Config } from '../env'
import { AuthRequiredError, InvalidRequestError } from '../errors'
import { sessionCredentials, type AccessCredentials, type RefreshCredentials, type ServiceCredentials } from './credentials'
import { verifyOAuthAccess } from './oauth-credentials'
import { assertOAuthMayCall } from './oauth-methods'
import { ACCESS_STANDARD, AuthScope } from './scope'
import { atprotoSigningKey, resolveDid } from '../identity/resolver'
import { isServiceJwt, verifyServiceJwt } from './service-jwt'

/** What a policy sees of a request. */
export interface AuthRequest {
  config: Config
  /** For resolving the DID documents whose keys sign service tokens. */
  cache: KvCache
  db: Db
  /** The Authorization header, if any. */
  authorization: string | null
  /** The XRPC method called (service tokens are bound to one). */
  nsid: string
  /** True when the method is not served here and will be forwarded. */
  forwarded: boolean
  /** The request itself (method, URL, DPoP and atproto-proxy headers). */
  request: Request
  /** Adds a header to the answer, error or not (the DPoP nonce). */
  setHeader(name: string, value: string): void
}

/** How a route authenticates, and what its handler receives. */
export type AuthPolicy<C> = (req: AuthRequest) => Promise<C>

/** Splits "<type> <token>"; mirrors the reference's parsing and messages. */
const parseAuthorization = (header: string | null): { scheme: 'bearer' | 'dpop'; token: string } | null => {
  if (!header) return null
  const parts = header.split(' ')
  if (parts.length !== 2) throw new InvalidRequestError('Malformed authorization header', 'InvalidToken')
  const type = parts[0].toUpperCase()
  if (type === 'BEARER') return { scheme: 'bearer', token: parts[1] }
  if (type === 'DPOP') return { scheme: 'dpop', token: parts[1] }
  if (type === 'BASIC') throw new InvalidRequestError('Unexpected authorization type', 'InvalidToken')
  throw new InvalidRequestError(`Unsupported authorization type: ${parts[0]}`, 'InvalidToken')
}

/** A Bearer token where only password-session tokens are accepted (refresh, service). */
const bearerToken = (header: string | null): string | null => {
  const parsed = parseAuthorization(header)
  if (parsed?.scheme === 'dpop') throw new InvalidRequestError('Unexpected authorization type', 'InvalidToken')
  return parsed?.token ?? null
}

/**
 * Access tokens this isolate has verified, by their exact text: an app sends
 * the same token on every call for up to two hours, and checking its HMAC
 * again proves nothing new. Only the signature check is skipped; expiry and
 * every claim check still run on each use, and a signed-out session is
 * still refused (src/auth/live-session.ts).
 */
const verifiedTokens = new Map<string, jose.JWTPayload>()
const VERIFIED_TOKENS_MAX = 64

const rememberVerified = (key: string, payload: jose.JWTPayload): void => {
  if (verifiedTokens.size >= VERIFIED_TOKENS_MAX) verifiedTokens.delete(verifiedTokens.keys().next().value as string)
  verifiedTokens.set(key, payload)
}

/** The HMAC key, imported once per secret instead of on every verification. */
let hmacKey: { secret: Uint8Array; key: Promise<CryptoKey> } | null = null
const hmacKeyFor = (secret: Uint8Array): Promise<CryptoKey> => {
  if (hmacKey?.secret !== secret) {
    hmacKey = { secret, key: crypto.subtle.importKey('raw', secret, { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']) }
  }
  return hmacKey.key
}

const verifySessionJwt = async (
  cfg: Config,
  token: string,
  opts: { typ: string; scopes: readonly string[]; allowExpired?: boolean },
): Promise<jose.JWTPayload & { sub: string }> => {
  const cacheKey = opts.allowExpired ? null : `${opts.typ} ${cfg.serviceDid} ${token}`
  let payload = cacheKey === null ? undefined : verifiedTokens.get(cacheKey)
  if (payload && (typeof payload.exp !== 'number' || payload.exp * 1000 <= Date.now())) {
    verifiedTokens.delete(cacheKey!)
    payload = undefined
  }
  if (!payload) {
    try {
      ;({ payload } = await jose.jwtVerify(token, await hmacKeyFor(cfg.jwtSecret), {
        audience: cfg.serviceDid,
        typ: opts.typ,
        algorithms: ['HS256'],
        clockTolerance: opts.allowExpired ? Number.MAX_SAFE_INTEGER : undefined,
      }))
    } catch (err) {
      if (err instanceof jose.errors.JWTExpired) throw new InvalidRequestError('Token has expired', 'ExpiredToken')
      throw new InvalidRequestError('Token could not be verified', 'InvalidToken')
    }
    if (cacheKey !== null) rememberVerified(cacheKey, payload)
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

/** Any access credential: a password or app-password session token, or an OAuth token with its DPoP proof. */
const verifyAccess = async (req: AuthRequest): Promise<AccessCredentials> => {
  const parsed = parseAuthorization(req.authorization)
  if (!parsed) throw new AuthRequiredError(undefined, 'AuthMissing')
  if (parsed.scheme === 'dpop') {
    const credentials = await verifyOAuthAccess({ config: req.config, db: req.db, request: req.request, token: parsed.token, setHeader: req.setHeader })
    assertOAuthMayCall(credentials, {
      nsid: req.nsid,
      forwarded: req.forwarded,
      proxyHeader: req.request.headers.get('atproto-proxy'),
      appViewAud: req.config.appView ? `${req.config.appView.did}#bsky_appview` : null,
    })
    return credentials
  }
  const payload = await verifySessionJwt(req.config, parsed.token, { typ: 'at+jwt', scopes: ACCESS_STANDARD })
  // Tokens issued before sessions had ids carry no sid: they are not checked and expire within two hours.
  if (payload.sid !== undefined && typeof payload.sid !== 'string') throw new InvalidRequestError('Malformed token', 'InvalidToken')
  return sessionCredentials(payload.sub, payload.scope as AuthScope, payload.sid ?? null)
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

/**
 * Account management: the owner's password session, not an app password. An
 * OAuth session has already met the method's row in the permission table
 * (identity:* for the PLC methods, account:repo for importRepo, never for the
 * rest), which is what the reference's `authorize` callbacks decide for it.
 */
export const fullAccessAuth: AuthPolicy<AccessCredentials> = async (req) => {
  const credentials = await verifyAccess(req)
  if (!credentials.oauth && !credentials.mayManageAccount()) throw new InvalidRequestError('Bad token scope', 'InvalidToken')
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
  const parsed = parseAuthorization(req.authorization)
  const token = parsed?.scheme === 'bearer' ? parsed.token : null
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
