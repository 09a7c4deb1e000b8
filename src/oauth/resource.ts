/**
 * The resource server's check of `Authorization: DPoP <token>` (RFC 9449 §7):
 * the proof (method, URL, nonce, `ath` bound to this token) and then, in ONE
 * D1 round trip, the proof's one-time use and the session the token belongs
 * to. The session row is the truth: a refreshed or revoked token has no row
 * and is refused on the very next request, wherever it lands.
 */
import { claimOnceStatement, sessionByAccessStatement, type OAuthSessionRow } from '../db/oauth'
import { iso, type OAuthContext } from './context'
import { dpopReplayKey, verifyDpopProof } from './dpop'
import { invalidDpopProof, invalidToken } from './errors'
import { hashSecret } from './keys'
import { ACCESS_TOKEN } from './token'

export interface DpopAuthorization {
  did: string
  clientId: string
  scope: string
  sessionId: string
}

/** Verifies a DPoP-bound access token and its proof; OAuth errors (401) otherwise. */
export const authenticateDpopRequest = async (
  ctx: Pick<OAuthContext, 'config' | 'db' | 'nonces' | 'now'>,
  req: { token: string; proof: string | null; method: string; url: string },
): Promise<DpopAuthorization> => {
  if (!ACCESS_TOKEN.test(req.token)) throw invalidToken('Invalid token')
  const proof = await verifyDpopProof({ proof: req.proof, method: req.method, url: req.url, accessToken: req.token, nonces: ctx.nonces, now: ctx.now })
  if (!proof) throw invalidDpopProof('DPoP proof required')
  const [claimed, sessions] = (await ctx.db.batch([
    claimOnceStatement(ctx.db, dpopReplayKey(proof), iso(proof.replayableUntil), iso(ctx.now)),
    sessionByAccessStatement(ctx.db, await hashSecret(ctx.config, req.token)),
  ])) as [{ key: string }[], OAuthSessionRow[]]
  if (claimed.length === 0) throw invalidDpopProof('DPoP proof replayed')
  const session = sessions[0]
  if (!session) throw invalidToken('Invalid token')
  if (session.dpopJkt !== proof.jkt) throw invalidToken('Invalid DPoP key binding')
  if (Date.parse(session.accessExpiresAt) <= ctx.now) throw invalidToken('Token expired')
  if (session.did !== ctx.config.did) throw invalidToken('Invalid token')
  if (!session.scope.split(' ').includes('atproto')) throw invalidToken('Invalid scope')
  return { did: session.did, clientId: session.clientId, scope: session.scope, sessionId: session.id }
}
