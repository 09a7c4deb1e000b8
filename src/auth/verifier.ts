/**
 * Turns an Authorization header into credentials, with the reference PDS's
 * errors: no header → 401 AuthMissing; bad, wrong-type or wrong-scope token →
 * 400 InvalidToken; expired → 400 ExpiredToken. A refresh token is refused
 * where an access token is needed and vice versa (the `typ` header differs).
 */
import * as jose from 'jose'
import type { Config } from '../env'
import { AuthRequiredError, InvalidRequestError } from '../xrpc/errors'
import { ACCESS_STANDARD, AuthScope } from './scope'
import { isServiceJwt, verifyServiceJwt } from './service-jwt'

export interface AccessCredentials {
  type: 'access'
  did: string
  scope: AuthScope
}

/** A service token the owner obtained from getServiceAuth (the video service uploading a blob). */
export interface ServiceCredentials {
  type: 'service'
  did: string
}

export interface RefreshCredentials {
  type: 'refresh'
  did: string
  tokenId: string
}

/** Splits "<type> <token>"; mirrors the reference's parsing and messages. */
const bearerToken = (header: string | null | undefined): string | null => {
  if (!header) return null
  const parts = header.split(' ')
  if (parts.length !== 2) throw new InvalidRequestError('Malformed authorization header', 'InvalidToken')
  const type = parts[0].toUpperCase()
  if (type === 'BEARER') return parts[1]
  if (type === 'BASIC' || type === 'DPOP') throw new InvalidRequestError('Unexpected authorization type', 'InvalidToken')
  throw new InvalidRequestError(`Unsupported authorization type: ${parts[0]}`, 'InvalidToken')
}

const verifyJwt = async (
  cfg: Config,
  token: string,
  opts: { typ: string; scopes: readonly string[]; allowExpired?: boolean },
): Promise<jose.JWTPayload> => {
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
  if (typeof payload.scope !== 'string' || !opts.scopes.includes(payload.scope)) {
    throw new InvalidRequestError('Bad token scope', 'InvalidToken')
  }
  return payload
}

export const verifyAccess = async (
  cfg: Config,
  header: string | null | undefined,
  scopes: readonly AuthScope[] = ACCESS_STANDARD,
): Promise<AccessCredentials> => {
  const token = bearerToken(header)
  if (!token) throw new AuthRequiredError(undefined, 'AuthMissing')
  const payload = await verifyJwt(cfg, token, { typ: 'at+jwt', scopes })
  return { type: 'access', did: payload.sub!, scope: payload.scope as AuthScope }
}

export const verifyRefresh = async (
  cfg: Config,
  header: string | null | undefined,
  opts: { allowExpired?: boolean } = {},
): Promise<RefreshCredentials> => {
  const token = bearerToken(header)
  if (!token) throw new AuthRequiredError(undefined, 'AuthMissing')
  const payload = await verifyJwt(cfg, token, { typ: 'refresh+jwt', scopes: [AuthScope.Refresh], allowExpired: opts.allowExpired })
  if (typeof payload.jti !== 'string') throw new AuthRequiredError('Unexpected missing refresh token id', 'MissingTokenId')
  return { type: 'refresh', did: payload.sub!, tokenId: payload.jti }
}

/** Optional auth: credentials if a valid access token is present, null if none is. */
export const verifyOptionalAccess = async (cfg: Config, header: string | null | undefined): Promise<AccessCredentials | null> =>
  header ? verifyAccess(cfg, header) : null

/**
 * An access token, or a service token addressed to this PDS for exactly
 * `lxm` and signed with the account's key (how the video service uploads
 * the owner's video with a token from getServiceAuth).
 */
export const verifyAccessOrServiceJwt = async (
  cfg: Config,
  header: string | null | undefined,
  lxm: string,
): Promise<AccessCredentials | ServiceCredentials> => {
  const token = bearerToken(header)
  if (token && isServiceJwt(token)) {
    const { iss } = await verifyServiceJwt(cfg, token, lxm)
    return { type: 'service', did: iss }
  }
  return verifyAccess(cfg, header)
}
