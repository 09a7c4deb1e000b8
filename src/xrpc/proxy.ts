/**
 * XRPC calls this PDS does not serve itself are forwarded for the logged-in
 * owner (AppView, chat, labelers, feed generators), as the reference PDS
 * does: protected account methods never leave, the target comes from
 * `atproto-proxy` or the configured defaults, the caller must hold an access
 * token, ordinary app passwords cannot reach direct messages, and the
 * upstream sees a fresh service token instead of our session token. AppView
 * reads of the owner's own content get read-after-write treatment.
 */
import type { Context } from 'hono'
import { createServiceJwt } from '../auth/service-jwt'
import { isAccessPrivileged } from '../auth/scope'
import { verifyAccess } from '../auth/verifier'
import type { Config } from '../env'
import { forwardXrpc } from '../proxy/forward'
import { readAfterWrite, READ_AFTER_WRITE_METHODS } from '../proxy/read-after-write'
import { isIn, PRIVILEGED_METHODS, PROTECTED_METHODS, resolveProxyTarget } from '../proxy/target'
import type { AppEnv } from './context'
import { InvalidRequestError, XrpcError } from './errors'
import type { XrpcRouter } from './router'

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

/** An answer made for this token must not be shared by caches (as the reference). */
const privateAnswer = (res: Response): Response => {
  res.headers.set('cache-control', 'private')
  res.headers.append('vary', 'Authorization')
  return res
}

/**
 * The catch-all for methods without a local handler. `opts.body` replaces
 * the request body when a local handler has already read it.
 */
export const proxyXrpc = async (c: Context<AppEnv>, nsid: string, opts: { body?: string } = {}): Promise<Response> => {
  const method = c.req.method
  if (method !== 'GET' && method !== 'HEAD' && method !== 'POST') {
    throw new InvalidRequestError('XRPC requests only supports GET and POST')
  }
  if (isIn(PROTECTED_METHODS, nsid)) throw new InvalidRequestError('Bad token method', 'InvalidToken')
  const { config: cfg, env, db } = c.get('deps')
  // The target is checked before the token, so a bad header is a 400 even unauthenticated (as the reference).
  const target = await resolveProxyTarget(cfg, env.CACHE, nsid, c.req.header('atproto-proxy'))
  const auth = await verifyAccess(cfg, c.req.header('authorization'))
  c.set('authDid', auth.did)
  // Ordinary app passwords stay away from direct messages.
  if (isIn(PRIVILEGED_METHODS, nsid) && !isAccessPrivileged(auth.scope)) throw new InvalidRequestError('Bad token method', 'InvalidToken')

  const body = method !== 'POST' ? null : opts.body !== undefined ? new Blob([opts.body]).stream() : c.req.raw.body
  const upstream = await forwardWithToken(cfg, c.req.raw, target.url, { aud: target.did, lxm: nsid }, body)
  if (method !== 'GET' || !READ_AFTER_WRITE_METHODS.has(nsid)) return privateAnswer(upstream)
  return privateAnswer(await readAfterWrite(nsid, upstream, { db, config: cfg, url: new URL(c.req.url) }))
}

export const registerProxiedMethods = (x: XrpcRouter): void => {
  /**
   * A custom feed: the AppView asks the feed generator for the skeleton with
   * our token, so the token is addressed to the generator's DID and allows
   * getFeedSkeleton (any other token and custom feeds break).
   */
  x.query('app.bsky.feed.getFeed', 'access', async ({ deps, params, req }) => {
    const cfg = deps.config
    const target = await resolveProxyTarget(cfg, deps.env.CACHE, 'app.bsky.feed.getFeed', req.headers.get('atproto-proxy'))
    const feedDid = await feedGeneratorDid(cfg.appView?.url ?? target.url, String(params.feed))
    return privateAnswer(await forwardWithToken(cfg, req, target.url, { aud: feedDid, lxm: FEED_SKELETON }, null))
  })
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
