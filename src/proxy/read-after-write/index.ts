/**
 * Read-after-write for proxied AppView queries (reference PDS:
 * read-after-write/ and the app.bsky handlers that use it).
 *
 * The AppView reports in `atproto-repo-rev` the rev of the owner's repo it
 * has indexed. When this repo has newer records, the owner would not see
 * what they just wrote (a post, a profile edit), so the response is patched
 * with local views of those records and says how far behind the AppView is
 * in `Atproto-Upstream-Lag` (milliseconds). Anything unexpected (other status,
 * not JSON, a body that fails the method's output lexicon, an error while
 * patching) leaves the AppView's answer as it was.
 */
import { jsonToLex, type JsonValue } from '@atproto/lex-json'
import { AtUri } from '@atproto/syntax'
import type { Db } from '../../db/client'
import type { Config } from '../../env'
import { methodSchema } from '../../lexicon'
import { mungeActorLikes, mungeAuthorFeed, mungeTimeline } from './feed'
import { loadLocalRecords, type LocalState, localLag } from './local'
import { mungeProfile, mungeProfiles } from './profile'
import { localPostThread, mungePostThread } from './thread'
import type { LocalRecords } from './types'
import type { Viewer } from './views'

export interface ReadAfterWriteContext {
  db: Db
  config: Config
  /** The account's current handle (a thread URI may name it; local views show it). */
  handle: string
  /** The original request URL (params) */
  url: URL
}

type Munge = (body: never, local: LocalRecords, viewer: Viewer) => unknown

const GET_POST_THREAD = 'app.bsky.feed.getPostThread'

const MUNGES: Record<string, Munge> = {
  'app.bsky.feed.getTimeline': mungeTimeline,
  'app.bsky.feed.getAuthorFeed': mungeAuthorFeed,
  [GET_POST_THREAD]: mungePostThread,
  'app.bsky.actor.getProfile': mungeProfile,
  'app.bsky.actor.getProfiles': mungeProfiles,
  'app.bsky.feed.getActorLikes': mungeActorLikes,
}

/** The methods whose AppView responses readAfterWrite may patch. */
export const READ_AFTER_WRITE_METHODS: ReadonlySet<string> = new Set(Object.keys(MUNGES))

/** The header the reference sets on patched responses: ms since the oldest write the AppView lacks. */
export const UPSTREAM_LAG_HEADER = 'Atproto-Upstream-Lag'

/** undefined when there is no content type: the reference then still tries to parse the body. */
const isJsonContentType = (contentType: string | null): boolean | undefined =>
  contentType ? /application\/(?:\w+\+)?json/i.test(contentType) : undefined

/**
 * Returns `upstream` untouched when nothing applies (non-200, not JSON, no
 * atproto-repo-rev, no newer local records); otherwise a new Response with
 * the munged JSON body and the upstream headers (content-length dropped)
 * plus the lag header.
 */
export async function readAfterWrite(nsid: string, upstream: Response, ctx: ReadAfterWriteContext): Promise<Response> {
  const munge = MUNGES[nsid]
  const rev = upstream.headers.get('atproto-repo-rev')
  if (!munge || !rev || isJsonContentType(upstream.headers.get('content-type')) === false) return upstream
  if (upstream.status === 200) return patchResponse(nsid, munge, upstream, ctx, rev)
  if (nsid === GET_POST_THREAD && upstream.status >= 400) return answerNotFound(upstream, ctx, rev)
  return upstream
}

const patchResponse = async (nsid: string, munge: Munge, upstream: Response, ctx: ReadAfterWriteContext, rev: string): Promise<Response> => {
  const state = await loadLocal(ctx, rev, nsid)
  if (!state || state.local.count === 0) return upstream
  // From here the body is consumed: on failure, answer with the same bytes.
  const bytes = await upstream.arrayBuffer()
  try {
    const body = JSON.parse(new TextDecoder().decode(bytes)) as unknown
    // Patching assumes the lexicon's shapes, so the reference only patches a valid body.
    if (!(await isValidOutput(nsid, body))) return sameResponse(upstream, bytes)
    return jsonResponse(upstream, munge(body as never, state.local, state.viewer), localLag(state.local))
  } catch (err) {
    logFailure(nsid, err)
    return sameResponse(upstream, bytes)
  }
}

/**
 * getPostThread for a post the AppView has not indexed: it answers NotFound
 * (400), and if the post is one of the owner's new ones we answer 200 with a
 * thread built locally.
 */
const answerNotFound = async (upstream: Response, ctx: ReadAfterWriteContext, rev: string): Promise<Response> => {
  const uri = ownerPostUri(ctx.url.searchParams.get('uri'), ctx)
  if (!uri) return upstream
  const state = await loadLocal(ctx, rev, GET_POST_THREAD)
  if (!state || !state.local.posts.some((p) => p.uri === uri)) return upstream
  const bytes = await upstream.arrayBuffer()
  try {
    const error = (JSON.parse(new TextDecoder().decode(bytes)) as { error?: unknown } | null)?.error
    const body = error === 'NotFound' ? localPostThread(uri, state.local, state.viewer) : null
    if (!body) return sameResponse(upstream, bytes)
    return jsonResponse(upstream, body, localLag(state.local), 200)
  } catch (err) {
    logFailure(GET_POST_THREAD, err)
    return sameResponse(upstream, bytes)
  }
}

/** The requested URI with the owner's handle resolved to the DID, if it names a record of the owner. */
const ownerPostUri = (param: string | null, { config, handle }: ReadAfterWriteContext): string | null => {
  if (!param) return null
  let uri: AtUri
  try {
    uri = new AtUri(param)
  } catch {
    return null
  }
  // Our only account: the reference resolves a handle through its account table.
  if (uri.hostname.toLowerCase() === handle) uri.hostname = config.did
  return uri.hostname === config.did ? uri.toString() : null
}

const loadLocal = async (ctx: ReadAfterWriteContext, rev: string, nsid: string): Promise<LocalState | null> => {
  try {
    return await loadLocalRecords(ctx.db, ctx.config, ctx.handle, rev)
  } catch (err) {
    // The body is still unread: the AppView's answer is better than an error.
    logFailure(nsid, err)
    return null
  }
}

const isValidOutput = async (nsid: string, body: unknown): Promise<boolean> => {
  const method = methodSchema(nsid)
  const schema = method?.type === 'query' ? method.output.schema : undefined
  if (!schema) return false
  // Lenient, as the reference: AppViews add fields and formats drift.
  return schema.safeValidate(jsonToLex(body as JsonValue, { strict: false }), { strict: false }).success
}

const jsonResponse = (upstream: Response, body: unknown, lag: number | undefined, status = upstream.status): Response => {
  const headers = new Headers(upstream.headers)
  headers.delete('content-length')
  headers.set('content-type', 'application/json; charset=utf-8')
  if (lag !== undefined) headers.set(UPSTREAM_LAG_HEADER, String(lag))
  return new Response(JSON.stringify(body), { status, headers })
}

/** The AppView's answer again, from the bytes already read (content-length dropped: it may count encoded bytes). */
const sameResponse = (upstream: Response, bytes: ArrayBuffer): Response => {
  const headers = new Headers(upstream.headers)
  headers.delete('content-length')
  return new Response(bytes, { status: upstream.status, statusText: upstream.statusText, headers })
}

const logFailure = (nsid: string, err: unknown): void => {
  console.warn(JSON.stringify({ readAfterWrite: nsid, error: String((err as Error)?.stack ?? err) }))
}
