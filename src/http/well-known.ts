/**
 * The well-known documents of the account's identity:
 * `/.well-known/atproto-did` (handle verification over HTTPS) and
 * `/.well-known/did.json` (the DID document, when the account is this
 * host's did:web).
 */
import type { Hono } from 'hono'
import { XrpcError } from '../errors'
import { buildDidDocument, isOwnDidWeb } from '../identity/did-doc'
import type { AppEnv } from './context'

export const mountWellKnown = (app: Hono<AppEnv>): void => {
  app.get('/.well-known/atproto-did', async (c) => {
    const { config, account } = c.get('deps')
    const { handle } = await account()
    const host = (c.req.header('host') ?? '').toLowerCase().split(':')[0]
    // Only the handle's own host proves the handle (as the reference); local
    // dev has no DNS for its handle, so a loopback host stands in for it.
    const isLoopbackDev = /^(localhost|127\.0\.0\.1)$/.test(host) && /^(localhost|127\.0\.0\.1)(:|$)/.test(config.hostname)
    if (host !== handle && !isLoopbackDev) {
      throw new XrpcError(404, 'User not found', 'NotFound')
    }
    return c.text(config.did)
  })

  app.get('/.well-known/did.json', async (c) => {
    const { config, account } = c.get('deps')
    if (!isOwnDidWeb(config)) throw new XrpcError(404, 'This PDS does not publish a did:web document', 'NotFound')
    return c.json(buildDidDocument(config, (await account()).handle))
  })
}
