/**
 * Password sessions: HS256 access and refresh JWTs with the reference PDS's
 * claims and lifetimes (access: `at+jwt`, 2 h; refresh: `refresh+jwt`, 90
 * days, with a `jti`), and refresh-token rotation with the reference's
 * two-hour grace: reusing a just-rotated token yields the same successor, so a
 * client that lost the response can recover, while a revoked token is gone.
 *
 * Every session has an id that stays the same across rotations; access
 * tokens carry it as `sid`, so ending a session (signing out, revoking its
 * app password, the account page) refuses its access tokens on their very
 * next request instead of when they expire (src/auth/live-session.ts).
 */
import * as jose from 'jose'
import type { Config } from '../env'
import type { Db } from '../db/client'
import { currentGrant, scopeFor, type AppPasswordGrant } from './app-passwords'
import { AuthScope } from './scope'
import { deleteExpiredRefreshTokens, deleteSessionOf, getRefreshToken, insertRefreshToken, rotateRefreshToken } from '../db/tokens'

export { AuthScope }

const ACCESS_LIFETIME = '120mins'
const REFRESH_LIFETIME_S = 90 * 24 * 3600
const REFRESH_GRACE_MS = 2 * 3600 * 1000

export interface SessionTokens {
  accessJwt: string
  refreshJwt: string
}

const newTokenId = (): string => jose.base64url.encode(crypto.getRandomValues(new Uint8Array(32)))

const signAccess = (cfg: Config, did: string, scope: AuthScope, sessionId: string): Promise<string> =>
  new jose.SignJWT({ scope, sid: sessionId })
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

/** Issues a new session (login), scoped down when it was made with an app password. */
export const createSessionTokens = async (db: Db, cfg: Config, did: string, grant: AppPasswordGrant | null = null): Promise<SessionTokens> => {
  const id = newTokenId()
  const sessionId = newTokenId()
  const exp = Math.floor(Date.now() / 1000) + REFRESH_LIFETIME_S
  const [accessJwt, refreshJwt] = await Promise.all([signAccess(cfg, did, scopeFor(grant), sessionId), signRefresh(cfg, did, id, exp)])
  await insertRefreshToken(db, { id, did, expiresAt: new Date(exp * 1000).toISOString(), appPasswordName: grant?.name ?? null, sessionId })
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
    // An app password's session keeps its scope; a revoked one's is over.
    const grant = token.appPasswordName === null ? null : await currentGrant(db, token.appPasswordName)
    if (token.appPasswordName !== null && grant === null) return null
    const nextId = token.nextId ?? newTokenId()
    const sessionId = token.sessionId ?? token.id
    const exp = Math.floor(now / 1000) + REFRESH_LIFETIME_S
    const [accessJwt, refreshJwt] = await Promise.all([
      signAccess(cfg, token.did, scopeFor(grant), sessionId),
      signRefresh(cfg, token.did, nextId, exp),
    ])
    const stored = await rotateRefreshToken(db, {
      id: tokenId,
      graceExpiresAt: new Date(graceExpiresAt).toISOString(),
      next: { id: nextId, did: token.did, expiresAt: new Date(exp * 1000).toISOString(), appPasswordName: token.appPasswordName, sessionId },
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

/** Signs a session out: all its refresh tokens, and so its access tokens too. */
export const revokeSession = (db: Db, tokenId: string): Promise<void> => deleteSessionOf(db, tokenId)
