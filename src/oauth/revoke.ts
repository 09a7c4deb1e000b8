/**
 * Token revocation (RFC 7009). A client signing out sends its refresh token
 * (or its access token); the session it belongs to ends, provided the caller
 * is that session's client and proves its DPoP key. As RFC 7009 and the
 * reference: once the request parses and its DPoP proof passes, the answer is
 * 200 whether or not anything was revoked (nothing to learn about tokens).
 */
import { oauthClientCredentialsSchema } from '@atproto/oauth-types'
import { deleteSessions, getSessionByAccess, getSessionByRefresh, sessionOfUsedRefresh } from '../db/oauth'
import { assertSameClientAuth, authenticateClient, type ClientAuth } from './client-auth'
import { loadClient } from './clients'
import type { OAuthContext } from './context'
import { verifyDpopProof } from './dpop'
import { claimer, type DpopInput } from './par'
import { invalidDpopProof, invalidRequest, OAuthError } from './errors'
import { dpopReplayKey } from './dpop'
import { hashSecret } from './keys'

/** The session a token names (access, current refresh, or an already rotated refresh token), if any. */
const sessionOfToken = async (ctx: OAuthContext, token: string) => {
  const hash = await hashSecret(ctx.config, token)
  if (token.startsWith('tok-')) return getSessionByAccess(ctx.db, hash)
  if (!token.startsWith('ref-')) return null
  return (await getSessionByRefresh(ctx.db, hash)) ?? { id: await sessionOfUsedRefresh(ctx.db, hash), clientId: null, clientAuth: null, dpopJkt: null }
}

/** POST /oauth/revoke. */
export const revokeToken = async (ctx: OAuthContext, body: Record<string, unknown>, dpop: DpopInput): Promise<void> => {
  const credentials = oauthClientCredentialsSchema.safeParse(body)
  if (!credentials.success) throw invalidRequest('Client credentials missing or invalid')
  const token = body.token
  if (typeof token !== 'string' || token === '') throw invalidRequest('"token" is required')
  // Nonce and signature errors are answered (the client retries with the nonce); nothing else is.
  const proof = await verifyDpopProof({ ...dpop, nonces: ctx.nonces, now: ctx.now })
  if (proof && !(await claimer(ctx)(dpopReplayKey(proof), proof.replayableUntil))) throw invalidDpopProof('DPoP proof replayed')
  try {
    const client = await loadClient(ctx, credentials.data.client_id)
    const clientAuth = await authenticateClient(ctx, client, credentials.data, proof?.jkt ?? null)
    const session = await sessionOfToken(ctx, token)
    if (!session?.id) return
    if (session.clientId !== null) {
      // The token's own session: only its client, with its DPoP key, may end it.
      if (session.clientId !== client.id || proof?.jkt !== session.dpopJkt) return
      assertSameClientAuth(JSON.parse(session.clientAuth) as ClientAuth, clientAuth)
    }
    await deleteSessions(ctx.db, [session.id])
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err
  }
}
