/**
 * com.atproto.identity.*: handle resolution and changes, and the PLC
 * operations a migration uses (getRecommendedDidCredentials,
 * requestPlcOperationSignature, signPlcOperation, submitPlcOperation), with
 * the reference PDS's rules, messages and events. (The well-known documents
 * that prove the identity are in src/http.)
 */
import { accessAuth, fullAccessAuth, noAuth } from '../auth/verifier'
import { setHandleStatement } from '../db/account-row'
import { appendEventStatements } from '../db/state'
import { checkToken, getEmailState, issueToken, sendToken, spendTokenStatement } from '../email/account-email'
import { InvalidRequestError } from '../errors'
import { encodeIdentityEvent } from '../firehose/events'
import type { Deps } from '../http/context'
import { resolveHandleDirectly, resolveOtherHandle } from '../identity/handle'
import { isPlcOperation, signPlcUpdate, submitPlcOperation, type PlcData } from '../identity/plc'
import { resolveDid } from '../identity/resolver'
import { com } from '../lexicons'
import type { XrpcRouter } from './router'

const PDS_SERVICE = 'AtprotoPersonalDataServer'

const requirePlc = (deps: Deps): void => {
  if (!deps.config.did.startsWith('did:plc:')) throw new InvalidRequestError(`${deps.config.did} is not a did:plc: there is no PLC operation to make`)
}

/** Appends `#identity` (with the handle when given) and tells the firehose; the DID document is re-read afresh. */
const announceIdentity = async (deps: Deps, handle: string | undefined, extra: Parameters<Deps['db']['batchSql']>[0] = []): Promise<void> => {
  const now = new Date().toISOString()
  await deps.db.batchSql([...extra, ...appendEventStatements('identity', encodeIdentityEvent({ did: deps.config.did, handle, time: now }), now)])
  deps.waitUntil(deps.firehose.notify())
  deps.waitUntil(resolveDid(deps.config, deps.cache, deps.config.did, { fresh: true }).catch(() => undefined))
}

export const registerIdentityMethods = (x: XrpcRouter): void => {
  x.query(com.atproto.identity.resolveHandle.main, noAuth, async ({ deps, params }) => {
    const handle = params.handle.toLowerCase()
    const account = await deps.account()
    // An inactive account's handle is not answered locally (as the reference); DNS or the AppView may know it.
    if (handle === account.handle && account.status === 'active') return { did: deps.config.did }
    // Handles under this PDS's own host can only be ours (as the reference's service domains).
    if (handle.endsWith(`.${deps.config.hostname.split(':')[0]}`)) throw new InvalidRequestError('Unable to resolve handle', 'HandleNotFound')
    // Anyone else's handle: the AppView knows it (as the reference asks it), or DNS/HTTPS does.
    const did = await resolveOtherHandle(deps.config, handle).catch(() => null)
    if (!did) throw new InvalidRequestError('Unable to resolve handle')
    return { did }
  })

  /**
   * A new handle must already resolve to the account's DID (DNS TXT or
   * https well-known). For a did:plc the DID document's alsoKnownAs is
   * updated with a PLC operation signed by this PDS's rotation key; a did:web
   * of this host serves the new handle from its did.json at once.
   */
  x.procedure(com.atproto.identity.updateHandle.main, accessAuth, async ({ deps, input }) => {
    const cfg = deps.config
    const handle = input.handle.toLowerCase()
    const resolved = await resolveHandleDirectly(cfg, handle).catch(() => null)
    if (resolved !== cfg.did) {
      throw new InvalidRequestError(`${handle} does not resolve to ${cfg.did} yet: add the DNS TXT record _atproto.${handle} "did=${cfg.did}" (or serve it at https://${handle}/.well-known/atproto-did), then try again`)
    }
    if (cfg.did.startsWith('did:plc:')) {
      const op = await signPlcUpdate(cfg.plcUrl, cfg.did, cfg.plcRotationKey, (data) => {
        // The first at:// entry is the handle: replace it in place, or put it first (as the reference does).
        const alsoKnownAs = [...data.alsoKnownAs]
        const at = alsoKnownAs.findIndex((aka) => aka.startsWith('at://'))
        if (at === -1) alsoKnownAs.unshift(`at://${handle}`)
        else alsoKnownAs[at] = `at://${handle}`
        return { alsoKnownAs }
      })
      await submitPlcOperation(cfg.plcUrl, cfg.did, op)
    }
    await announceIdentity(deps, handle, [setHandleStatement(deps.db, cfg.did, handle)])
  })

  x.query(com.atproto.identity.getRecommendedDidCredentials.main, accessAuth, async ({ deps }) => {
    const cfg = deps.config
    const { handle } = await deps.account()
    return {
      alsoKnownAs: [`at://${handle}`],
      verificationMethods: { atproto: cfg.signingKey.did() },
      rotationKeys: [cfg.plcRotationKey.did()],
      services: { atproto_pds: { type: PDS_SERVICE, endpoint: cfg.serviceUrl } },
    }
  })

  /**
   * A one-time code (XXXXX-XXXXX, 15 minutes, single use) that signPlcOperation
   * requires: mailed when this PDS can send email, otherwise kept for the owner
   * to read with `npm run plc-token`.
   */
  x.procedure(com.atproto.identity.requestPlcOperationSignature.main, fullAccessAuth, async ({ deps }) => {
    requirePlc(deps)
    const { address } = await getEmailState(deps.db, deps.config)
    if (deps.email && address) await sendToken(deps.db, deps.email, 'plc_operation', address)
    else await issueToken(deps.db, 'plc_operation')
  })

  x.procedure(com.atproto.identity.signPlcOperation.main, fullAccessAuth, async ({ deps, input }) => {
    requirePlc(deps)
    if (!input.token) throw new InvalidRequestError('email confirmation token required to sign PLC operations')
    await checkToken(deps.db, 'plc_operation', input.token)
    // Spent before anything else can fail, as the reference does.
    await deps.db.batch([spendTokenStatement(deps.db, 'plc_operation')])
    const cfg = deps.config
    const given: Partial<PlcData> = {
      ...(input.rotationKeys ? { rotationKeys: input.rotationKeys } : {}),
      ...(input.alsoKnownAs ? { alsoKnownAs: input.alsoKnownAs } : {}),
      ...(input.verificationMethods ? { verificationMethods: input.verificationMethods as unknown as Record<string, string> } : {}),
      ...(input.services ? { services: input.services as unknown as PlcData['services'] } : {}),
    }
    return { operation: await signPlcUpdate(cfg.plcUrl, cfg.did, cfg.plcRotationKey, () => given) }
  })

  /** An operation the old PDS signed, checked to keep this PDS in charge, then sent to the directory. */
  x.procedure(com.atproto.identity.submitPlcOperation.main, accessAuth, async ({ deps, input }) => {
    requirePlc(deps)
    const cfg = deps.config
    const op = input.operation
    if (!isPlcOperation(op)) throw new InvalidRequestError('Invalid operation')
    if (!op.rotationKeys.includes(cfg.plcRotationKey.did())) throw new InvalidRequestError("Rotation keys do not include server's rotation key")
    const pds = op.services.atproto_pds
    if (pds?.type !== PDS_SERVICE) throw new InvalidRequestError('Incorrect type on atproto_pds service')
    if (pds.endpoint.replace(/\/+$/, '') !== cfg.serviceUrl) throw new InvalidRequestError('Incorrect endpoint on atproto_pds service')
    if (op.verificationMethods.atproto !== cfg.signingKey.did()) throw new InvalidRequestError('Incorrect signing key')
    const { handle } = await deps.account()
    if (op.alsoKnownAs[0] !== `at://${handle}`) throw new InvalidRequestError('Incorrect handle in alsoKnownAs')
    await submitPlcOperation(cfg.plcUrl, cfg.did, op)
    await announceIdentity(deps, undefined)
  })
}
