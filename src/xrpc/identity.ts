/**
 * Identity: com.atproto.identity.resolveHandle and the well-known documents
 * (`/.well-known/atproto-did` for handle verification over HTTPS,
 * `/.well-known/did.json` when the account is this host's did:web).
 */
import type { Hono } from 'hono'
import { buildDidDocument, isOwnDidWeb } from '../identity/did-doc'
import { resolveOtherHandle } from '../identity/handle'
import type { AppEnv } from './context'
import type { XrpcRouter } from './router'
import { InvalidRequestError, XrpcError } from './errors'

export const registerIdentityMethods = (x: XrpcRouter): void => {
  x.query('com.atproto.identity.resolveHandle', 'none', async ({ deps, params }) => {
    const handle = String(params.handle).toLowerCase()
    if (handle === deps.config.handle) return { did: deps.config.did }
    // Handles under this PDS's own host can only be ours (as the reference's service domains).
    if (handle.endsWith(`.${deps.config.hostname.split(':')[0]}`)) throw new InvalidRequestError('Unable to resolve handle', 'HandleNotFound')
    // Anyone else's handle: the AppView knows it (as the reference asks it), or DNS/HTTPS does.
    const did = await resolveOtherHandle(deps.config, handle).catch(() => null)
    if (!did) throw new InvalidRequestError('Unable to resolve handle')
    return { did }
  })
}

export const mountWellKnown = (app: Hono<AppEnv>): void => {
  app.get('/.well-known/atproto-did', (c) => {
    const { config } = c.get('deps')
    const host = (c.req.header('host') ?? '').toLowerCase().split(':')[0]
    // Only the handle's own host proves the handle (as the reference); local
    // dev has no DNS for its handle, so a loopback host stands in for it.
    const isLoopbackDev = /^(localhost|127\.0\.0\.1)$/.test(host) && /^(localhost|127\.0\.0\.1)(:|$)/.test(config.hostname)
    if (host !== config.handle && !isLoopbackDev) {
      throw new XrpcError(404, 'User not found', 'NotFound')
    }
    return c.text(config.did)
  })

  app.get('/.well-known/did.json', (c) => {
    const { config } = c.get('deps')
    if (!isOwnDidWeb(config)) throw new XrpcError(404, 'This PDS does not publish a did:web document', 'NotFound')
    return c.json(buildDidDocument(config))
  })
}
