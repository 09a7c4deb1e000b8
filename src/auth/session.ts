/**
 * Password sessions: HS256 access and refresh JWTs with the reference PDS's
 * claims and lifetimes (access: `at+jwt`, 2 h; refresh: `refresh+jwt`, 90
 * days, with a `jti`), and refresh-token rotation with the reference's
 * two-hour grace: reusing a just-rotated token yields the same successor, so a
 * client that lost the response can recover, while a revoked token is gone.
 */
import * as jose from 'jose'
import type { Config } from '../env'
import type { Db } from '../db/client'
import { deleteExpiredRefreshTokens, deleteRefreshToken, getRefreshToken, insertRefreshToken, rotateRefreshToken } from '../db/tokens'

export enum AuthScope {
  Access = 'com.atproto.access',
  Refresh = 'com.atproto.refresh',
  AppPass = 'com.atproto.appPass',
  AppPassPrivileged = 'com.atproto.appPassPrivileged',
}

const ACCESS_LIFETIME = '120mins'
const REFRESH_LIFETIME_S = 90 * 24 * 3600
const REFRESH_GRACE_MS = 2 * 3600 * 1000

export interface SessionTokens {
  accessJwt: string
  refreshJwt: string
}

const newTokenId = (): string => {
  const bytes = crypto.getRandomValues(new Uint8Array(32))
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '')
}

const signAccess = (cfg: Config, did: string, scope: AuthScope): Promise<string> =>
  new jose.SignJWT({ scope })
    .setProtectedHeader({ typ: 'at+jwt', alg: 'HS256' })
    .setAudience(cfg.serviceDid)
    .setSubject(did)
    .setIssuedAt()
    .setExpirationTime(ACCESS_LIFETIME)
    .sign(cfg.jwtSecret)

const signRefresh = (cfg: Config, did: string, jti: string, expiresAt: number): Promise<string> =>
  new jose.SignJWT({ scope: AuthScope.Refresh })
    .setProtectedHeader({ typ: 'refresh+jwt', alg: 'HS256' })
    .setAudience(cfg.serviceDid)
    .setSubject(did)
    .setJti(jti)
    .setIssuedAt()
    .setExpirationTime(expiresAt)
    .sign(cfg.jwtSecret)

/** Issues a new session (login). */
export const createSessionTokens = async (db: Db, cfg: Config, did: string): Promise<SessionTokens> => {
  const id = newTokenId()
  const exp = Math.floor(Date.now() / 1000) + REFRESH_LIFETIME_S
  const [accessJwt, refreshJwt] = await Promise.all([signAccess(cfg, did, AuthScope.Access), signRefresh(cfg, did, id, exp)])
  await insertRefreshToken(db, { id, did, expiresAt: new Date(exp * 1000).toISOString(), appPasswordName: null })
  return { accessJwt, refreshJwt }
}

/**
 * Rotates a refresh token. Returns null when it was revoked, expired or is
 * past its grace period.
 */
export const rotateSession = async (db: Db, cfg: Config, tokenId: string): Promise<SessionTokens | null> => {
  for (let attempt = 0; attempt < 3; attempt++) {
    const token = await getRefreshToken(db, tokenId)
    if (!token) return null
    const now = Date.now()
    const prevExpiresAt = Date.parse(token.expiresAt)
    const graceExpiresAt = Math.min(now + REFRESH_GRACE_MS, prevExpiresAt)
    if (graceExpiresAt <= now) return null
    const nextId = token.nextId ?? newTokenId()
    const exp = Math.floor(now / 1000) + REFRESH_LIFETIME_S
    const [accessJwt, refreshJwt] = await Promise.all([signAccess(cfg, token.did, AuthScope.Access), signRefresh(cfg, token.did, nextId, exp)])
    const stored = await rotateRefreshToken(db, {
      id: tokenId,
      graceExpiresAt: new Date(graceExpiresAt).toISOString(),
      next: { id: nextId, did: token.did, expiresAt: new Date(exp * 1000).toISOString(), appPasswordName: token.appPasswordName },
    })
    if (stored) {
      // Best effort tidy-up, as the reference does on refresh.
      await deleteExpiredRefreshTokens(db, new Date(now).toISOString())
      return { accessJwt, refreshJwt }
    }
    // A concurrent refresh chose another successor: go round and reuse it.
  }
  return null
}

export const revokeSession = (db: Db, tokenId: string): Promise<void> => deleteRefreshToken(db, tokenId)
