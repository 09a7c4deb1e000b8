/**
 * The HTTP side of forwarding (src/proxy): the router's fallback for every
 * method without a local handler, and app.bsky.feed.getFeed, whose token is
 * addressed to the feed generator. Both authenticate through the router, like
 * any route.
 */
import type { AccessCredentials } from '../auth/credentials'
import { accessAuth } from '../auth/verifier'
import { app } from '../lexicons'
import { forwardCall, forwardGetFeed, forwardingTarget } from '../proxy/pipethrough'
import type { ProxyTarget } from '../proxy/target'
import type { XrpcFallback, XrpcRouter } from './router'

export const forwarding: XrpcFallback<ProxyTarget, AccessCredentials> = {
  auth: accessAuth,
  prepare: ({ deps, nsid, req }) => forwardingTarget(deps.config, deps.cache, nsid, req),
  handler: ({ deps, nsid, req, auth, prepared }) => forwardCall(deps, nsid, req, prepared, auth),
}

export const registerProxiedMethods = (x: XrpcRouter): void => {
  x.query(app.bsky.feed.getFeed.main, accessAuth, async ({ deps, params, req }) => forwardGetFeed(deps.config, deps.cache, req, params.feed))
}
