/**
 * The token endpoint (RFC 6749 §3.2 with RFC 9449 DPoP binding): codes for
 * tokens, refresh tokens for new ones. Error codes as
 * `@atproto/oauth-provider` answers them (its clients branch on them).
 *
 * Tokens are opaque random strings; D1 holds their keyed hashes. Access
 * tokens live 15 minutes (the spec wants under 30) and are checked against
 * the session row on every request, so a refresh or a revocation ends the
 * previous one at once. Refresh tokens are single use: each refresh rotates
 * both, and presenting an old refresh token again ends the whole session.
 * Sessions of public clients end two weeks after sign-in; confidential
 * clients' after two years, or three months without a refresh (as the
 * reference).
 */
import { oauthClientCredentialsSchema, oauthTokenRequestSchema } from '@atproto/oauth-types'
import { claimOnce, consumeCode, deleteSessions, getSessionByRefresh, insertSession, rotateSessionTokens, sessionIdByCode, sessionOfUsedRefresh, type OAuthSessionRow } from '../db/oauth'
import { assertSameClientAuth, authenticateClient, type ClientAuth } from './client-auth'
import { loadClient, type OAuthClient } from './clients'
import { iso, type OAuthContext } from './context'
import { acceptDpopProof } from './dpop'
import { invalidGrant } from './errors'
import { hashSecret, randomToken, sha256b64url } from './keys'
import { challengeKey, claimer, type DpopInput, type StoredParameters } from './par'
import { tokenScope } from './scopes'

export const ACCESS_TOKEN_LIFETIME_MS = 15 * 60 * 1000
const DAY_MS = 24 * 3600 * 1000
const PUBLIC_SESSION_MS = 14 * DAY_MS
const CONFIDENTIAL_SESSION_MS = 2 * 365 * DAY_MS
const CONFIDENTIAL_INACTIVITY_MS = 90 * DAY_MS
/** A used code challenge is refused at PAR and here for this long. */
const USED_CHALLENGE_MS = 30 * DAY_MS

export const ACCESS_TOKEN = /^tok-[0-9a-f]{64}$/
const REFRESH_TOKEN = /^ref-[0-9a-f]{64}$/
const CODE = /^cod-[0-9a-f]{64}$/

export interface TokenResponse {
  access_token: string
  token_type: 'DPoP'
  refresh_token?: string
  scope: string
  expires_in: number
  sub: string
}

/** When a session started at `createdAt` must stop refreshing, seen at `now`. */
const sessionEnd = (client: OAuthClient, createdAt: number, now: number): number =>
  client.confidential ? Math.min(createdAt + CONFIDENTIAL_SESSION_MS, now + CONFIDENTIAL_INACTIVITY_MS) : createdAt + PUBLIC_SESSION_MS

const issue = async (ctx: OAuthContext, client: OAuthClient, sessionExpiresAt: number) => {
  const accessToken = randomToken('tok-')
  const refreshToken = randomToken('ref-')
  const accessExpiresAt = Math.min(ctx.now + ACCESS_TOKEN_LIFETIME_MS, sessionExpiresAt)
  return {
    accessToken,
    refreshToken,
    accessExpiresAt,
    accessHash: await hashSecret(ctx.config, accessToken),
    refreshHash: await hashSecret(ctx.config, refreshToken),
    response: (scope: string): TokenResponse => ({
      access_token: accessToken,
      token_type: 'DPoP',
      // Only for clients that declared the refresh grant.
      ...(client.metadata.grant_types.includes('refresh_token') ? { refresh_token: refreshToken } : {}),
      scope,
      expires_in: Math.floor((accessExpiresAt - ctx.now) / 1000),
      sub: ctx.config.did,
    }),
  }
}

const codeGrant = async (
  ctx: OAuthContext,
  client: OAuthClient,
  clientAuth: ClientAuth,
  jkt: string,
  input: { code: string; redirect_uri: string; code_verifier?: string },
): Promise<TokenResponse> => {
  if (!CODE.test(input.code)) throw invalidGrant('Invalid code')
  const codeHash = await hashSecret(ctx.config, input.code)
  const request = await consumeCode(ctx.db, codeHash)
  if (!request) {
    // A code presented twice: whoever got tokens with it first may be an attacker, so they end.
    const replayed = await sessionIdByCode(ctx.db, codeHash)
    if (replayed) await deleteSessions(ctx.db, [replayed])
    throw invalidGrant('Invalid code')
  }
  if (Date.parse(request.expiresAt) <= ctx.now) throw invalidGrant('This code has expired')
  if (request.clientId !== client.id) throw invalidGrant('The code was not issued to this client')
  assertSameClientAuth(JSON.parse(request.clientAuth) as ClientAuth, clientAuth)
  if (request.dpopJkt !== jkt) throw invalidGrant('DPoP proof does not match the expected JKT')
  const params = JSON.parse(request.parameters) as StoredParameters
  if (input.redirect_uri !== params.redirect_uri) throw invalidGrant('This code was issued for another redirect_uri')
  if (!input.code_verifier) throw invalidGrant('code_verifier is required')
  if ((await sha256b64url(input.code_verifier)) !== params.code_challenge) throw invalidGrant('Invalid code_verifier')
  if (!(await claimOnce(ctx.db, challengeKey(params.code_challenge), iso(ctx.now + USED_CHALLENGE_MS), iso(ctx.now)))) {
    throw invalidGrant('Code challenge already used')
  }

  const scope = await tokenScope(ctx, params.scope)
  const expiresAt = sessionEnd(client, ctx.now, ctx.now)
  const tokens = await issue(ctx, client, expiresAt)
  const session: OAuthSessionRow = {
    id: randomToken('ses-', 16),
    did: ctx.config.did,
    clientId: client.id,
    clientAuth: JSON.stringify(clientAuth),
    dpopJkt: jkt,
    requestScope: params.scope,
    scope,
    codeHash,
    accessHash: tokens.accessHash,
    accessExpiresAt: iso(tokens.accessExpiresAt),
    refreshHash: tokens.refreshHash,
    createdAt: iso(ctx.now),
    refreshedAt: iso(ctx.now),
    expiresAt: iso(expiresAt),
  }
  await insertSession(ctx.db, session)
  return tokens.response(scope)
}

const refreshGrant = async (ctx: OAuthContext, client: OAuthClient, clientAuth: ClientAuth, jkt: string, refreshToken: string): Promise<TokenResponse> => {
  if (!REFRESH_TOKEN.test(refreshToken)) throw invalidGrant('Invalid refresh token')
  const oldHash = await hashSecret(ctx.config, refreshToken)
  const session = await getSessionByRefresh(ctx.db, oldHash)
  if (!session) {
    const replayed = await sessionOfUsedRefresh(ctx.db, oldHash)
    if (replayed) {
      await deleteSessions(ctx.db, [replayed])
      throw invalidGrant('Refresh token replayed')
    }
    throw invalidGrant('Invalid refresh token')
  }
  // From here the token was valid: a mismatch means it is in the wrong hands, so the session ends.
  const end = async (why: string): Promise<never> => {
    await deleteSessions(ctx.db, [session.id])
    throw invalidGrant(why)
  }
  if (session.clientId !== client.id) await end('The refresh token was not issued to this client')
  try {
    assertSameClientAuth(JSON.parse(session.clientAuth) as ClientAuth, clientAuth)
  } catch (err) {
    await end((err as Error).message)
  }
  if (session.dpopJkt !== jkt) await end('DPoP proof does not match the session\'s key')
  if (!client.metadata.grant_types.includes('refresh_token')) await end('This client may not use refresh tokens')
  if (Date.parse(session.expiresAt) <= ctx.now) await end('Refresh token expired')

  const scope = await tokenScope(ctx, session.requestScope, session.scope)
  const expiresAt = sessionEnd(client, Date.parse(session.createdAt), ctx.now)
  const tokens = await issue(ctx, client, expiresAt)
  const rotated = await rotateSessionTokens(ctx.db, {
    id: session.id,
    oldRefreshHash: oldHash,
    set: {
      accessHash: tokens.accessHash,
      accessExpiresAt: iso(tokens.accessExpiresAt),
      refreshHash: tokens.refreshHash,
      refreshedAt: iso(ctx.now),
      expiresAt: iso(expiresAt),
      scope,
      clientAuth: JSON.stringify(clientAuth),
    },
  })
  // Another refresh with the same token won the race: one of the two is not the client.
  if (!rotated) await end('Refresh token replayed')
  return tokens.response(scope)
}

/** POST /oauth/token. */
export const exchangeToken = async (ctx: OAuthContext, body: Record<string, unknown>, dpop: DpopInput): Promise<TokenResponse> => {
  const credentials = oauthClientCredentialsSchema.safeParse(body)
  if (!credentials.success) throw invalidGrant('Client credentials missing or invalid')
  const request = oauthTokenRequestSchema.safeParse(body)
  if (!request.success) throw invalidGrant(`Invalid request payload: ${request.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
  const proof = await acceptDpopProof({ ...dpop, nonces: ctx.nonces, now: ctx.now }, claimer(ctx))
  const client = await loadClient(ctx, credentials.data.client_id)
  const clientAuth = await authenticateClient(ctx, client, credentials.data, proof.jkt)
  const input = request.data
  if (input.grant_type !== 'authorization_code' && input.grant_type !== 'refresh_token') {
    throw invalidGrant(`Grant type "${input.grant_type}" is not supported by the server`)
  }
  if (!client.metadata.grant_types.includes(input.grant_type)) throw invalidGrant(`This client may not use the "${input.grant_type}" grant`)
  if (input.grant_type === 'authorization_code') return codeGrant(ctx, client, clientAuth, proof.jkt, input)
  return refreshGrant(ctx, client, clientAuth, proof.jkt, input.refresh_token)
}
