/**
 * Account management for the owner: app passwords, service tokens for other
 * services (getServiceAuth), and what a single-user PDS refuses (password
 * reset, account deletion through the API).
 * Rules and messages follow the reference PDS.
 */
import { createAppPassword } from '../auth/app-passwords'
import { assertMayCallService } from '../auth/credentials'
import { isIn, PROTECTED_METHODS } from '../auth/method-classes'
import { createServiceJwt } from '../auth/service-jwt'
import { accessAuth, fullAccessAuth, noAuth } from '../auth/verifier'
import { deleteAppPassword, listAppPasswords } from '../db/account'
import { InvalidRequestError } from '../errors'
import { com } from '../lexicons'
import type { XrpcRouter } from './router'

const MINUTE_MS = 60_000
const HOUR_MS = 60 * MINUTE_MS

/** A did:plc or did:web DID, optionally with a `#service` reference (the `aud` getServiceAuth accepts). */
const ATPROTO_DID_REF = /^did:(plc:[a-z2-7]{24}|web:[a-zA-Z0-9.-]+(%3[aA]\d+)?)(#[a-zA-Z0-9_-]+)?$/

/** Deleting the account is deleting the deployment: its data is the owner's, in their own Cloudflare account. */
const DELETED_BY_OPERATOR =
  'The account of this single-user PDS is deleted by its owner deleting the deployment (see the README); to move it elsewhere, migrate it and deactivate it here.'

const PASSWORD_BY_OPERATOR = 'The password of this PDS is set by its owner with the PDS_PASSWORD secret (see the README); it cannot be reset by email.'

export const registerAccountMethods = (x: XrpcRouter): void => {
  x.procedure(com.atproto.server.createAppPassword.main, fullAccessAuth, async ({ deps, input }) =>
    createAppPassword(deps.db, deps.config.did, input.name, input.privileged === true),
  )

  x.query(com.atproto.server.listAppPasswords.main, accessAuth, async ({ deps }) => ({ passwords: await listAppPasswords(deps.db) }))

  // Revoking also ends every session made with that password (its refresh tokens).
  x.procedure(com.atproto.server.revokeAppPassword.main, accessAuth, async ({ deps, input }) => {
    await deleteAppPassword(deps.db, input.name)
  })

  x.query(com.atproto.server.getServiceAuth.main, accessAuth, async ({ deps, params, auth }) => {
    const { aud, exp } = params
    const lxm = params.lxm ?? null
    if (!ATPROTO_DID_REF.test(aud)) throw new InvalidRequestError('aud must be a valid atproto DID or did#serviceId reference')
    // A method-less token may be used for any method: OAuth sessions need rpc:*.
    assertMayCallService(auth, lxm ?? '*', aud, () => new InvalidRequestError(`insufficient access to request a service auth token for the following method: ${lxm}`))
    if (exp !== undefined) {
      const diff = exp * 1000 - Date.now()
      if (diff < 0) throw new InvalidRequestError('expiration is in past', 'BadExpiration')
      if (diff > HOUR_MS) throw new InvalidRequestError('cannot request a token with an expiration more than an hour in the future', 'BadExpiration')
      if (!lxm && diff > MINUTE_MS) {
        throw new InvalidRequestError('cannot request a method-less token with an expiration more than a minute in the future', 'BadExpiration')
      }
    }
    if (lxm && isIn(PROTECTED_METHODS, lxm)) {
      throw new InvalidRequestError(`cannot request a service auth token for the following protected method: ${lxm}`)
    }
    return { token: await createServiceJwt(deps.config.signingKey, { iss: deps.config.did, aud, lxm, exp }) }
  })

  const refuse = (message: string) => async (): Promise<never> => {
    throw new InvalidRequestError(message)
  }
  x.procedure(com.atproto.server.requestAccountDelete.main, fullAccessAuth, refuse(DELETED_BY_OPERATOR))
  // deleteAccount proves itself with a password and an emailed token, not a session.
  x.procedure(com.atproto.server.deleteAccount.main, noAuth, refuse(DELETED_BY_OPERATOR))

  // Invite codes do not exist on a single-user PDS; the app still asks.
  x.query(com.atproto.server.getAccountInviteCodes.main, fullAccessAuth, async () => ({ codes: [] }))

  x.procedure(com.atproto.server.requestPasswordReset.main, noAuth, refuse(PASSWORD_BY_OPERATOR))
  x.procedure(com.atproto.server.resetPassword.main, noAuth, refuse(PASSWORD_BY_OPERATOR))
}
