/**
 * Account management for the owner: app passwords, service tokens for other
 * services (getServiceAuth), and the email methods the Bluesky app calls.
 * Rules and messages follow the reference PDS.
 */
import { createAppPassword } from '../auth/app-passwords'
import { isAccessPrivileged } from '../auth/scope'
import { createServiceJwt } from '../auth/service-jwt'
import { countAccountState, deleteAppPassword, listAppPasswords } from '../db/account'
import { resolveDid, serviceEndpoint, verificationKey } from '../identity/resolver'
import { isIn, PRIVILEGED_METHODS, PROTECTED_METHODS } from '../proxy/target'
import { InvalidRequestError } from './errors'
import type { XrpcRouter } from './router'

const MINUTE_MS = 60_000
const HOUR_MS = 60 * MINUTE_MS

/** A did:plc or did:web DID, optionally with a `#service` reference (the `aud` getServiceAuth accepts). */
const ATPROTO_DID_REF = /^did:(plc:[a-z2-7]{24}|web:[a-zA-Z0-9.-]+(%3[aA]\d+)?)(#[a-zA-Z0-9_-]+)?$/

/** What the owner changes in the deployment's settings rather than through an app. */
const BY_OPERATOR: Record<string, string> = {
  'com.atproto.identity.updateHandle':
    'The handle of this PDS is its PDS_HANDLE setting: change it in wrangler.toml and redeploy (the PDS then announces it to the network).',
  'com.atproto.server.deactivateAccount': 'This single-user PDS is deactivated by its owner stopping the Worker (wrangler delete), not through the API.',
  'com.atproto.server.activateAccount': 'The account of this single-user PDS is always active.',
  'com.atproto.server.requestAccountDelete': 'The account of this single-user PDS is deleted by its owner deleting the deployment (see the README).',
  'com.atproto.server.deleteAccount': 'The account of this single-user PDS is deleted by its owner deleting the deployment (see the README).',
  'com.atproto.identity.requestPlcOperationSignature': 'PLC operations are signed with the rotation key its owner keeps (see the README: migration).',
  'com.atproto.identity.signPlcOperation': 'PLC operations are signed with the rotation key its owner keeps (see the README: migration).',
}

const PASSWORD_BY_OPERATOR = 'The password of this PDS is set by its owner with the PDS_PASSWORD secret (see the README); it cannot be reset by email.'

export const registerAccountMethods = (x: XrpcRouter): void => {
  x.procedure('com.atproto.server.createAppPassword', 'access-full', async ({ deps, input }) =>
    createAppPassword(deps.db, deps.config.did, String(input.name), input.privileged === true),
  )

  x.query('com.atproto.server.listAppPasswords', 'access', async ({ deps }) => ({ passwords: await listAppPasswords(deps.db) }))

  // Revoking also ends every session made with that password (its refresh tokens).
  x.procedure('com.atproto.server.revokeAppPassword', 'access', async ({ deps, input }) => {
    await deleteAppPassword(deps.db, String(input.name))
  })

  x.query('com.atproto.server.getServiceAuth', 'access', async ({ deps, params, auth }) => {
    const aud = String(params.aud)
    const lxm = typeof params.lxm === 'string' ? params.lxm : null
    const exp = typeof params.exp === 'number' ? params.exp : undefined
    if (!ATPROTO_DID_REF.test(aud)) throw new InvalidRequestError('aud must be a valid atproto DID or did#serviceId reference')
    if (lxm !== null && isIn(PRIVILEGED_METHODS, lxm) && !isAccessPrivileged(auth.scope)) {
      throw new InvalidRequestError(`insufficient access to request a service auth token for the following method: ${lxm}`)
    }
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

  // What migration tools ask before and after moving an account here.
  x.query('com.atproto.server.checkAccountStatus', 'access', async ({ deps }) => {
    const cfg = deps.config
    const [counts, didDoc] = await Promise.all([countAccountState(deps.db), resolveDid(cfg, deps.env.CACHE, cfg.did).catch(() => null)])
    return {
      activated: true,
      // The world must find this PDS and its key in the DID document.
      validDid:
        didDoc !== null &&
        verificationKey(didDoc, 'atproto') === cfg.signingKey.did().slice('did:key:'.length) &&
        serviceEndpoint(didDoc, 'atproto_pds') === cfg.serviceUrl,
      repoCommit: counts.root?.cid ?? '',
      repoRev: counts.root?.rev ?? '',
      repoBlocks: counts.blocks,
      indexedRecords: counts.records,
      privateStateValues: counts.prefs,
      expectedBlobs: counts.expectedBlobs,
      importedBlobs: counts.importedBlobs,
    }
  })

  const byOperator = (nsid: string) => async (): Promise<never> => {
    throw new InvalidRequestError(BY_OPERATOR[nsid])
  }
  // deleteAccount proves itself with a password and an emailed token, not a session.
  for (const nsid of Object.keys(BY_OPERATOR)) x.procedure(nsid, nsid.endsWith('.deleteAccount') ? 'none' : 'access-full', byOperator(nsid))

  // Invite codes do not exist on a single-user PDS; the app still asks.
  x.query('com.atproto.server.getAccountInviteCodes', 'access-full', async () => ({ codes: [] }))

  const noReset = async (): Promise<never> => {
    throw new InvalidRequestError(PASSWORD_BY_OPERATOR)
  }
  x.procedure('com.atproto.server.requestPasswordReset', 'none', noReset)
  x.procedure('com.atproto.server.resetPassword', 'none', noReset)
}
