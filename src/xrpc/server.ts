/**
 * com.atproto.server.*: service description and password sessions, answering
 * as the reference PDS does (same shapes, statuses and error names).
 */
import { createSessionTokens, revokeSession, rotateSession } from '../auth/session'
import { verifyPassword } from '../auth/password'
import type { Config } from '../env'
import { buildDidDocument, isOwnDidWeb, resolveOwnAccount } from '../identity/did-doc'
import type { XrpcRouter } from './router'
import { AuthRequiredError, InvalidRequestError, RateLimitExceededError } from './errors'

/** The reference refuses longer passwords outright. */
const MAX_PASSWORD_LENGTH = 512

/** What createSession, getSession and refreshSession say about the account. */
const accountView = (cfg: Config) => ({
  did: cfg.did,
  // The DID document is ours to give when we publish it (did:web); did:plc
  // documents are resolved by the identity layer in a later change.
  ...(isOwnDidWeb(cfg) ? { didDoc: buildDidDocument(cfg) } : {}),
  handle: cfg.handle,
  ...(cfg.email ? { email: cfg.email } : {}),
  emailConfirmed: false,
  active: true,
})

export const registerServerMethods = (x: XrpcRouter): void => {
  x.query('com.atproto.server.describeServer', 'none', async ({ deps }) => ({
    did: deps.config.serviceDid,
    availableUserDomains: [],
    inviteCodeRequired: true,
    blobUploadLimit: deps.config.blobUploadLimit,
    links: {},
    contact: {},
  }))

  x.procedure('com.atproto.server.createSession', 'none', async ({ deps, input, req }) => {
    const { config: cfg, env } = deps
    const identifier = String(input.identifier)
    const password = String(input.password)
    // Every attempt counts, keyed like the reference: identifier + client IP.
    const ip = req.headers.get('cf-connecting-ip') ?? 'local'
    const { success } = await env.LOGIN_LIMITER.limit({ key: `${identifier.toLowerCase()}-${ip}` })
    if (!success) throw new RateLimitExceededError('Too many login attempts, try again in a minute')

    if (password.length > MAX_PASSWORD_LENGTH) {
      throw new AuthRequiredError('Password too long. Consider resetting your password.')
    }
    // Check the password even for an unknown identifier, so timing tells nothing.
    const passwordOk = await verifyPassword(cfg.password, password)
    const isOwner = resolveOwnAccount(cfg, identifier) !== null || (cfg.email !== null && identifier.toLowerCase() === cfg.email)
    if (!passwordOk || !isOwner) throw new AuthRequiredError('Invalid identifier or password')

    const tokens = await createSessionTokens(deps.db, cfg, cfg.did)
    return { ...tokens, ...accountView(cfg) }
  })

  x.query('com.atproto.server.getSession', 'access', async ({ deps }) => accountView(deps.config))

  x.procedure('com.atproto.server.refreshSession', 'refresh', async ({ deps, auth }) => {
    if (auth.did !== deps.config.did) throw new InvalidRequestError(`Could not find user info for account: ${auth.did}`)
    const tokens = await rotateSession(deps.db, deps.config, auth.tokenId)
    if (!tokens) throw new InvalidRequestError('Token has been revoked', 'ExpiredToken')
    return { ...tokens, ...accountView(deps.config) }
  })

  x.procedure('com.atproto.server.deleteSession', 'refresh-allow-expired', async ({ deps, auth }) => {
    await revokeSession(deps.db, auth.tokenId)
  })
}
