/**
 * com.atproto.identity.*: handle resolution, as the reference PDS answers it.
 * (The well-known documents that prove the identity are in src/http.)
 */
import { noAuth } from '../auth/verifier'
import { InvalidRequestError } from '../errors'
import { resolveOtherHandle } from '../identity/handle'
import { com } from '../lexicons'
import type { XrpcRouter } from './router'

export const registerIdentityMethods = (x: XrpcRouter): void => {
  x.query(com.atproto.identity.resolveHandle.main, noAuth, async ({ deps, params }) => {
    const handle = params.handle.toLowerCase()
    if (handle === deps.config.handle) return { did: deps.config.did }
    // Handles under this PDS's own host can only be ours (as the reference's service domains).
    if (handle.endsWith(`.${deps.config.hostname.split(':')[0]}`)) throw new InvalidRequestError('Unable to resolve handle', 'HandleNotFound')
    // Anyone else's handle: the AppView knows it (as the reference asks it), or DNS/HTTPS does.
    const did = await resolveOtherHandle(deps.config, handle).catch(() => null)
    if (!did) throw new InvalidRequestError('Unable to resolve handle')
    return { did }
  })
}
