/**
 * Signing out takes effect on the very next request. A password session's
 * access token is a JWT that would stay valid for its two hours, so it
 * carries its session's id (`sid`) and is refused once the session has no
 * refresh token left (signed out with deleteSession or on the account page,
 * or its app password revoked): one indexed D1 read, placed where it costs
 * the least latency:
 *
 * - queries (local or forwarded) read it alongside the handler's own work and
 *   refuse before answering: reads add no waiting, and nothing is answered
 *   to a signed-out session;
 * - record writes check it in their own D1 round trip (CommitOptions
 *   `liveSession`: the commit's guard, or the read batch when the write
 *   reads first), so it adds no round trip and a signed-out session commits
 *   nothing;
 * - every other procedure (uploads, preferences, account changes, forwarded
 *   procedures with effects elsewhere) reads it before the handler runs.
 *
 * OAuth access tokens are looked up on every call anyway
 * (src/auth/oauth-credentials.ts); tokens issued before sessions had ids
 * carry no `sid` and simply expire.
 */
import type { Db } from '../db/client'
import { isLiveSession } from '../db/tokens'
import { SessionRevokedError } from '../errors'

/** When a route checks the session: beside its work (queries), in its commit (record writes), or first. */
export type SessionCheck = 'alongside' | 'in-commit' | 'first'

/** The session to check for this credential, if it is a password session that has an id. */
export const sessionToCheck = (auth: unknown): string | null =>
  auth !== null && typeof auth === 'object' && 'sessionId' in auth && typeof auth.sessionId === 'string' ? auth.sessionId : null

export const assertLiveSession = async (db: Db, sessionId: string): Promise<void> => {
  if (!(await isLiveSession(db, sessionId))) throw new SessionRevokedError()
}

/**
 * Starts the check for `auth` (nothing for other credentials, or 'in-commit'
 * where the write path reads it itself) and returns what to await: before the
 * handler for 'first', before answering for 'alongside'.
 */
export const startSessionCheck = (db: Db, auth: unknown, when: SessionCheck): (() => Promise<void>) => {
  const sessionId = sessionToCheck(auth)
  if (sessionId === null || when === 'in-commit') return async () => {}
  const pending = assertLiveSession(db, sessionId)
  // Awaited later; a handler error in between must not leave it unhandled.
  pending.catch(() => {})
  return () => pending
}
