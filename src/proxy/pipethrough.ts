/**
 * Forwarding a call this PDS does not serve, for the logged-in owner (AppView,
 * chat, labelers, feed generators), as the reference PDS's pipethrough does:
 * protected account methods never leave, the target comes from `atproto-proxy`
 * or the configured defaults, the credential must allow the method at that
 * service (ordinary app passwords never reach direct messages), and the
 * upstream sees a fresh service token instead of our session token. AppView
 * reads of the owner's own content get read-after-write treatment.
 */
import { assertMayCallService, type AccessCredentials } from '../auth/credentials'
import { isIn, PROTECTED_METHODS } from '../auth/method-classes'
import { createServiceJwt } from '../auth/service-jwt'
import type { KvCache } from '../cache/kv-cache'
import type { Db } from '../db/client'
import type { Config } from '../env'
import { InvalidRequestError, XrpcError } from '../errors'
import { forwardXrpc } from './forward'
import { readAfterWrite, READ_AFTER_WRITE_METHODS } from './read-after-write'
import { resolveProxyTarget, type ProxyTarget } from './target'

const FEED_SKELETON = 'app.bsky.feed.getFeedSkeleton'

/** This request, sent on to `origin` with a service token for `claims` instead of the session token. */
const forwardWithToken = async (
  cfg: Config,
  req: Request,
  origin: string,
  claims: { aud: string; lxm: string },
  body: ReadableStream<Uint8Array> | null,
): Promise<Response> => {
  const url = new URL(req.url)
  return forwardXrpc({
    origin,
    method: req.method as 'GET' | 'HEAD' | 'POST',
    pathAndQuery: `${url.pathname}${url.search}`,
    incoming: req.headers,
    body,
    serviceToken: await createServiceJwt(cfg.signingKey, { iss: cfg.did, ...claims }),
  })
}

/**
 * Where a call goes, checked before any credential (as the reference: a bad
 * header is a 400 even unauthenticated).
 */
export const forwardingTarget = async (cfg: Config, cache: KvCache, nsid: string, req: Request): Promise<ProxyTarget> => {
  const method = req.method
  if (method !== 'GET' && method !== 'HEAD' && method !== 'POST') {
    throw new InvalidRequestError('XRPC requests only supports GET and POST')
  }
  if (isIn(PROTECTED_METHODS, nsid)) throw new InvalidRequestError('Bad token method', 'InvalidToken')
  return resolveProxyTarget(cfg, cache, nsid, req.headers.get('atproto-proxy'))
}

/** Forwards the call to `target` for a credential that may make it. */
export const forwardCall = async (
  ctx: { config: Config; db: Db; account(): Promise<{ handle: string }> },
  nsid: string,
  req: Request,
  target: ProxyTarget,
  auth: AccessCredentials,
): Promise<Response> => {
  // Permissions name the service as the proxy header does: did#service.
  assertMayCallService(auth, nsid, `${target.did}#${target.serviceId}`, () => new InvalidRequestError('Bad token method', 'InvalidToken'))
  const body = req.method === 'POST' ? req.body : null
  const upstream = await forwardWithToken(ctx.config, req, target.url, { aud: target.did, lxm: nsid }, body)
  if (req.method !== 'GET' || !READ_AFTER_WRITE_METHODS.has(nsid)) return upstream
  return readAfterWrite(nsid, upstream, { db: ctx.db, config: ctx.config, handle: (await ctx.account()).handle, url: new URL(req.url) })
}

/**
 * A custom feed: the AppView asks the feed generator for the skeleton with
 * our token, so the token is addressed to the generator's DID and allows
 * getFeedSkeleton (any other token and custom feeds break).
 */
export const forwardGetFeed = async (cfg: Config, cache: KvCache, req: Request, feedUri: string): Promise<Response> => {
  const target = await resolveProxyTarget(cfg, cache, 'app.bsky.feed.getFeed', req.headers.get('atproto-proxy'))
  const feedDid = await feedGeneratorDid(cfg.appView?.url ?? target.url, feedUri)
  return forwardWithToken(cfg, req, target.url, { aud: feedDid, lxm: FEED_SKELETON }, null)
}

/** The `did` of an app.bsky.feed.generator record, read (unauthenticated) from the AppView. */
const feedGeneratorDid = async (appViewUrl: string, feedUri: string): Promise<string> => {
  const match = /^at:\/\/([^/]+)\/([^/]+)\/([^/?#]+)$/.exec(feedUri)
  if (!match) throw new InvalidRequestError('could not resolve feed did', 'UnknownFeed')
  const query = new URLSearchParams({ repo: match[1], collection: match[2], rkey: match[3] })
  const res = await forwardXrpc({
    origin: appViewUrl,
    method: 'GET',
    pathAndQuery: `/xrpc/com.atproto.repo.getRecord?${query}`,
    incoming: new Headers(),
    body: null,
    serviceToken: null,
  })
  if (!res.ok) {
    const body = (await res.json().catch(() => ({}))) as { error?: string; message?: string }
    throw new XrpcError(res.status, body.message, body.error)
  }
  const record = (await res.json().catch(() => null)) as { value?: { did?: unknown } } | null
  const did = record?.value?.did
  if (typeof did !== 'string') throw new InvalidRequestError('could not resolve feed did', 'UnknownFeed')
  return did
}
