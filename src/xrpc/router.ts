/**
 * XRPC dispatch: one Hono route for `/xrpc/:nsid` that checks the HTTP
 * method, decodes and validates params and JSON input with the method's
 * generated lexicon schema, runs the route's auth policy, then calls the
 * handler with input typed for that very method. Handlers never re-check
 * what the lexicon guarantees and never see Hono.
 *
 * Methods without a route go to the fallback (forwarding), which runs the
 * same auth path; a served method called with the wrong HTTP verb answers
 * 400, as `@atproto/xrpc-server` does.
 */
import type { Context, Hono } from 'hono'
import { jsonToLex } from '@atproto/lex-json'
import { l } from '@atproto/lex-schema'
import { isValidNsid } from '@atproto/syntax'
import { startSessionCheck } from '../auth/live-session'
import { noAuth, type AuthPolicy } from '../auth/verifier'
import type { Config } from '../env'
import { InvalidRequestError, XrpcError } from '../errors'
import type { AppEnv, Deps } from '../http/context'
import { markPrivate, withHeaders } from '../http/private'

type Method = l.Query | l.Procedure

export interface HandlerArgs<M extends Method, C> {
  deps: Deps
  params: l.InferMethodParams<M>
  /** The validated JSON body of a procedure (lex values: CIDs, bytes, blob refs). */
  input: l.InferMethodInputBody<M, Uint8Array>
  auth: C
  /** The raw request, for handlers that stream (blob uploads, CARs) or read a header. */
  req: Request
}

/** A handler answers with a JSON body, a ready Response, or nothing (200 empty). */
export type XrpcHandler<M extends Method, C> = (args: HandlerArgs<M, C>) => Promise<object | Response | void>

export interface RouteOptions {
  /** The handler reads the raw body itself (uploads, CAR imports): no JSON parsing. */
  rawInput?: boolean
  /**
   * When true for a request, the call is addressed to another service and
   * goes to the fallback untouched (e.g. preferences asked of another AppView).
   */
  forwardIf?: (req: Request, config: Config) => boolean
  /**
   * Record writes: the handler passes `auth.sessionId` to the write path,
   * which checks the session in its own D1 round trip (src/auth/live-session.ts).
   */
  sessionCheckedInCommit?: boolean
}

interface Route {
  method: Method
  auth: AuthPolicy<unknown>
  handler: XrpcHandler<Method, unknown>
  opts: RouteOptions
}

/** The catch-all for methods without a route: forwarding, through the same auth path. */
export interface XrpcFallback<T, C> {
  auth: AuthPolicy<C>
  /** Runs before authentication (the reference checks the forwarding target first). */
  prepare(args: { deps: Deps; nsid: string; req: Request }): Promise<T>
  handler(args: { deps: Deps; nsid: string; req: Request; auth: C; prepared: T }): Promise<Response>
}

export class XrpcRouter {
  private routes = new Map<string, Route>()
  private fallback: XrpcFallback<unknown, unknown> | null = null
  private rawRoutes = new Map<string, (c: Context<AppEnv>) => Promise<Response>>()

  query<M extends l.Query, C>(method: M, auth: AuthPolicy<C>, handler: XrpcHandler<M, C>, opts: RouteOptions = {}): void {
    this.add(method, auth, handler, opts)
  }

  procedure<M extends l.Procedure, C>(method: M, auth: AuthPolicy<C>, handler: XrpcHandler<M, C>, opts: RouteOptions = {}): void {
    this.add(method, auth, handler, opts)
  }

  /**
   * A path under /xrpc/ that is not a lexicon call (the health check, the
   * firehose WebSocket): served by the same Hono route, because a static
   * route beside `/xrpc/:nsid` would make Hono fall back from its one-regex
   * router to the slower trie on every request.
   */
  raw(name: string, handler: (c: Context<AppEnv>) => Promise<Response>): void {
    this.rawRoutes.set(name, handler)
  }

  setFallback<T, C>(fallback: XrpcFallback<T, C>): void {
    this.fallback = fallback as XrpcFallback<unknown, unknown>
  }

  /** Mounts the dispatcher on the app. */
  mount(app: Hono<AppEnv>): void {
    app.all('/xrpc/:nsid', (c) => this.dispatch(c))
  }

  private add<M extends Method, C>(method: M, auth: AuthPolicy<C>, handler: XrpcHandler<M, C>, opts: RouteOptions): void {
    this.routes.set(method.nsid, { method, auth, handler: handler as XrpcHandler<Method, unknown>, opts })
  }

  private async dispatch(c: Context<AppEnv>): Promise<Response> {
    // The raw path segment, as the reference reads it: nothing that is not an NSID is served or forwarded.
    const url = new URL(c.req.url)
    const nsid = url.pathname.slice('/xrpc/'.length)
    const raw = c.req.method === 'GET' || c.req.method === 'HEAD' ? this.rawRoutes.get(nsid) : undefined
    if (raw) return raw(c)
    if (!isValidNsid(nsid)) throw new InvalidRequestError('invalid xrpc path')
    const deps = c.get('deps')
    const req = c.req.raw
    const route = this.routes.get(nsid)
    if (!route || route.opts.forwardIf?.(req, deps.config)) return this.forward(c, nsid)

    const verb = route.method.type === 'procedure' ? 'POST' : 'GET'
    const method = req.method === 'HEAD' ? 'GET' : req.method
    if (method !== verb) throw new InvalidRequestError(`Incorrect HTTP method (${req.method}) expected ${verb}`)

    // In the reference's order: params, then credentials, then the body.
    const params = parseParams(nsid, route.method, url.searchParams)
    const authenticated = route.auth !== noAuth
    // Set before the handler runs, so error answers are private too.
    if (authenticated) {
      c.header('cache-control', 'private')
      c.header('vary', 'Authorization', { append: true })
    }
    const { auth, headers } = await this.authenticate(c, route.auth, nsid, false)
    const sessionLive = await this.checkSession(deps, auth, route.opts.sessionCheckedInCommit ? 'in-commit' : verb)
    const input = await readInput(route, req)
    const result = await route.handler({ deps, params, input, auth, req } as HandlerArgs<Method, unknown>)
    await sessionLive()
    if (result instanceof Response) return authenticated ? withHeaders(markPrivate(result), headers) : result
    return result === undefined ? c.body(null, 200) : c.json(result)
  }

  private async forward(c: Context<AppEnv>, nsid: string): Promise<Response> {
    if (!this.fallback) throw new XrpcError(501)
    const deps = c.get('deps')
    const req = c.req.raw
    const prepared = await this.fallback.prepare({ deps, nsid, req })
    const { auth, headers } = await this.authenticate(c, this.fallback.auth, nsid, true)
    const sessionLive = await this.checkSession(deps, auth, req.method === 'GET' || req.method === 'HEAD' ? 'GET' : 'POST')
    const response = await this.fallback.handler({ deps, nsid, req, auth, prepared })
    await sessionLive()
    return withHeaders(markPrivate(response), headers)
  }

  /**
   * A password session must still be live (src/auth/live-session.ts): a
   * query checks alongside its work and before answering, a procedure before
   * its handler runs, a record write inside its commit. Returns what to
   * await before answering.
   */
  private async checkSession(deps: Deps, auth: unknown, when: 'GET' | 'POST' | 'in-commit'): Promise<() => Promise<void>> {
    const settled = startSessionCheck(deps.db, auth, when === 'GET' ? 'alongside' : when === 'POST' ? 'first' : 'in-commit')
    if (when === 'POST') await settled()
    return settled
  }

  /**
   * Runs a policy; the caller's DID goes into the request log. Headers the
   * policy adds (the DPoP nonce) go on every answer: set on the context for
   * JSON and error answers, returned for handlers that build a Response.
   */
  private async authenticate<C>(c: Context<AppEnv>, policy: AuthPolicy<C>, nsid: string, forwarded: boolean): Promise<{ auth: C; headers: Record<string, string> }> {
    const deps = c.get('deps')
    const headers: Record<string, string> = {}
    const auth = await policy({
      config: deps.config,
      cache: deps.cache,
      db: deps.db,
      authorization: c.req.header('authorization') ?? null,
      nsid,
      forwarded,
      request: c.req.raw,
      setHeader: (name, value) => {
        headers[name] = value
        c.header(name, value)
      },
    })
    if (auth !== null && typeof auth === 'object' && 'did' in auth) c.set('authDid', String(auth.did))
    return { auth, headers }
  }
}

/** Validates query params with the method's lexicon (as the reference: same messages). */
const parseParams = (nsid: string, method: Method, search: URLSearchParams): unknown => {
  if (search.has('__proto__')) throw new InvalidRequestError('Invalid query parameter: __proto__', 'InvalidQueryParameter')
  try {
    return method.parameters.fromURLSearchParams(search)
  } catch (err) {
    if (err instanceof l.LexValidationError) {
      throw new InvalidRequestError(`Invalid ${nsid} params: ${err.issues.map((issue) => issue.message).join(', ')}`)
    }
    throw err
  }
}

/** JSON bodies above this are refused (a commit's event may not exceed 2 MB anyway). */
const MAX_JSON_BYTES = 2_000_000
/**
 * JSON nested deeper than this is refused before it is parsed into lex
 * values (a recursive walk): 128 levels, the limit of common JSON and
 * DAG-CBOR decoders that relays and AppViews use, far above any real record.
 */
export const MAX_JSON_DEPTH = 128

/** The route's input: the validated JSON body, nothing (after checking there is none), or the raw body left to the handler. */
const readInput = async (route: Route, req: Request): Promise<unknown> => {
  if (route.opts.rawInput) return undefined
  const payload = route.method.type === 'procedure' ? route.method.input : null
  if (!payload?.encoding) {
    await assertNoBody(req)
    return undefined
  }
  return parseInput(payload, req)
}

/** As the reference: a method that takes no input refuses a body (an empty one is fine). */
const assertNoBody = async (req: Request): Promise<void> => {
  const length = req.headers.get('content-length')
  if (length !== null) {
    if (length.trim() !== '0') throw new InvalidRequestError('A request body was provided when none was expected')
    return
  }
  if (!req.body) return
  // Chunked: framing says nothing about content, so look at the first bytes.
  const reader = req.body.getReader()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return
      if (value.byteLength > 0) throw new InvalidRequestError('A request body was provided when none was expected')
    }
  } finally {
    await reader.cancel().catch(() => undefined)
  }
}

/**
 * Reads a JSON body, converts it to the atproto data model ($link, $bytes,
 * blobs) and validates it with the method's lexicon. Handlers get lex values.
 * Values outside the data model (a malformed $link or $bytes, a $link object
 * with other keys, floats, an empty $type) are refused here, for every method,
 * so none can reach a record, a preference or any other stored value.
 */
const parseInput = async (payload: l.Payload, req: Request): Promise<unknown> => {
  const declared = Number(req.headers.get('content-length') ?? 0)
  if (declared > MAX_JSON_BYTES) throw new XrpcError(413, 'request entity too large')
  const text = await req.text()
  if (text.length > MAX_JSON_BYTES) throw new XrpcError(413, 'request entity too large')
  if (text.length === 0) throw new InvalidRequestError('A request body is expected but none was provided')
  const encoding = (req.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase()
  if (!payload.matchesEncoding(encoding)) {
    throw new InvalidRequestError(`Wrong request encoding (Content-Type): ${encoding || 'none'}`)
  }
  if (jsonDepth(text) > MAX_JSON_DEPTH) {
    throw new InvalidRequestError(`The input is too deeply nested (more than ${MAX_JSON_DEPTH} levels)`)
  }
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (err) {
    throw new InvalidRequestError(`Invalid JSON body: ${errorMessage(err)}`)
  }
  // The lexicon first, so its refusals carry the reference's words; then the data model, strictly,
  // for what a lexicon lets through (records and other open values).
  let value: unknown
  try {
    value = payload.schema ? payload.schema.parse(jsonToLex(body as never)) : jsonToLex(body as never)
  } catch (err) {
    throw new InvalidRequestError(errorMessage(err))
  }
  try {
    jsonToLex(body as never, { strict: true })
  } catch (err) {
    throw new InvalidRequestError(`Invalid data model value: ${errorMessage(err)}`)
  }
  return value
}

/** The deepest nesting of arrays and objects in a JSON text (strings skipped), without parsing it. */
const jsonDepth = (text: string): number => {
  let depth = 0
  let max = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x7b || c === 0x5b) {
      depth++
      if (depth > max) max = depth
    } else if (c === 0x7d || c === 0x5d) depth--
  }
  return max
}

const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err))
