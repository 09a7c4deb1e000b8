/**
 * com.atproto.server.*: service description and password sessions, answering
 * as the reference PDS does (same shapes, statuses and error names).
 */
import { verifyAppPassword } from '../auth/app-passwords'
import { createSessionTokens, revokeSession, rotateSession } from '../auth/session'
import { anyRefreshAuth, accessAuth, noAuth, refreshAuth } from '../auth/verifier'
import { statusView } from '../account-status'
import { type EmailState, getEmailState } from '../email/account-email'
import { AuthRequiredError, InvalidRequestError, RateLimitExceededError, SessionRevokedError } from '../errors'
import type { Deps } from '../http/context'
import { resolveOwnAccount } from '../identity/did-doc'
import { resolveDid } from '../identity/resolver'
import { com } from '../lexicons'
import { verifyPassword } from '../password-setting'
import type { XrpcRouter } from './router'

/** The reference refuses longer passwords outright. */
const MAX_PASSWORD_LENGTH = 512

/**
 * What createSession, getSession and refreshSession say about the account.
 * Clients read the PDS endpoint from `didDoc`; like the reference, a
 * document that cannot be resolved right now is left out, not an error. A
 * deactivated account (waiting to be migrated in, or on its way out) can
 * still log in, and says so: `active: false, status: 'deactivated'`.
 */
const accountView = async (deps: Deps, knownEmail?: EmailState) => {
  const { config: cfg, cache, db } = deps
  const account = await deps.account()
  const [didDoc, email] = await Promise.all([
    resolveDid(cfg, cache, cfg.did, { ownHandle: account.handle }).catch(() => undefined),
    knownEmail ?? getEmailState(db, cfg),
  ])
  return {
    did: cfg.did,
    ...(didDoc ? { didDoc } : {}),
    handle: account.handle,
    ...(email.address ? { email: email.address } : {}),
    emailConfirmed: email.confirmed,
    ...statusView(account),
  }
}

export const registerServerMethods = (x: XrpcRouter): void => {
  x.query(com.atproto.server.describeServer.main, noAuth, async ({ deps }) => ({
    did: deps.config.serviceDid,
    availableUserDomains: [],
    inviteCodeRequired: true,
    blobUploadLimit: deps.config.blobUploadLimit,
    links: {},
    contact: {},
  }))

  x.procedure(com.atproto.server.createSession.main, noAuth, async ({ deps, input, req }) => {
    const { config: cfg } = deps
    const { identifier, password } = input
    // Every attempt counts, keyed like the reference: identifier + client IP.
    const ip = req.headers.get('cf-connecting-ip') ?? 'local'
    const { success } = await deps.loginLimiter.limit({ key: `${identifier.toLowerCase()}-${ip}` })
    if (!success) throw new RateLimitExceededError('Too many login attempts, try again in a minute')

    if (password.length > MAX_PASSWORD_LENGTH) {
      throw new AuthRequiredError('Password too long. Consider resetting your password.')
    }
    // Check the password even for an unknown identifier, so timing tells nothing.
    const passwordOk = await verifyPassword(cfg.password, password)
    // An email identifier is compared with the current address (it may have been updated through the app).
    const emailState = identifier.includes('@') ? await getEmailState(deps.db, cfg) : undefined
    const email = emailState?.address ?? null
    const isOwner =
      resolveOwnAccount(cfg, (await deps.account()).handle, identifier) !== null || (email !== null && identifier.toLowerCase() === email.toLowerCase())
    // Not the owner's password: maybe one of the app passwords.
    const grant = passwordOk ? null : await verifyAppPassword(deps.db, cfg.did, password)
    if (!(passwordOk || grant) || !isOwner) throw new AuthRequiredError('Invalid identifier or password')

    const [tokens, view] = await Promise.all([createSessionTokens(deps.db, cfg, cfg.did, grant), accountView(deps, emailState)])
    return { ...tokens, ...view }
  })

  // An OAuth session sees the email only with account:email (or transition:email), as the reference.
  x.query(com.atproto.server.getSession.main, accessAuth, async ({ deps, auth }) => {
    const view = await accountView(deps)
    if (auth.mayReadEmail()) return view
    const { email: _email, emailConfirmed: _confirmed, ...withoutEmail } = view
    return withoutEmail
  })

  x.procedure(com.atproto.server.refreshSession.main, refreshAuth, async ({ deps, auth }) => {
    const [tokens, view] = await Promise.all([rotateSession(deps.db, deps.config, auth.tokenId), accountView(deps)])
    if (!tokens) throw new SessionRevokedError()
    return { ...tokens, ...view }
  })

  x.procedure(com.atproto.server.deleteSession.main, anyRefreshAuth, async ({ deps, auth }) => {
    await revokeSession(deps.db, auth.tokenId)
  })
}
