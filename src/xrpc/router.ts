/**
 * XRPC dispatch: one Hono route for `/xrpc/:nsid` that checks the HTTP
 * method, decodes and validates params and JSON input against the official
 * lexicons, verifies auth, then calls the handler with typed-enough input.
 * Handlers never re-check what the lexicon already guarantees.
 *
 * Methods without a route go to the fallback (the proxy) or answer 501
 * MethodNotImplemented; a served method called with the wrong HTTP verb
 * answers 400, as `@atproto/xrpc-server` does.
 */
import type { Context, Hono } from 'hono'
import { jsonToLex } from '@atproto/lex-json'
import { isValidNsid } from '@atproto/syntax'
import { l } from '@atproto/lex-schema'
import { ACCESS_FULL } from '../auth/scope'
import {
  verifyAccess,
  verifyAccessOrServiceJwt,
  verifyOptionalAccess,
  verifyRefresh,
  type AccessCredentials,
  type RefreshCredentials,
  type ServiceCredentials,
} from '../auth/verifier'
import { methodSchema, methodType } from '../lexicon'
import type { AppEnv, Deps } from './context'
import { InvalidRequestError, MethodNotImplementedError, XrpcError } from './errors'

/**
 * `access`: any session (app passwords included); `access-full`: the owner's
 * password only (account management); `access-or-service`: also a service
 * token from getServiceAuth addressed to us for this very method.
 */
type AuthMode = 'none' | 'access' | 'access-full' | 'access-or-service' | 'refresh' | 'refresh-allow-expired' | 'optional'

type CredentialsFor<A extends AuthMode> = A extends 'access' | 'access-full'
  ? AccessCredentials
  : A extends 'access-or-service'
    ? AccessCredentials | ServiceCredentials
    : A extends 'refresh' | 'refresh-allow-expired'
      ? RefreshCredentials
      : A extends 'optional'
        ? AccessCredentials | null
        : null

export interface HandlerArgs<A extends AuthMode> {
  deps: Deps
  params: Record<string, any>
  /** The validated JSON body (procedures with a JSON input), else undefined. */
  input: any
  auth: CredentialsFor<A>
  /** The raw request, for handlers that stream (blob uploads, CARs). */
  req: Request
  c: Context<AppEnv>
}

/** A handler answers with a JSON body, a ready Response, or nothing (200 empty). */
export type XrpcHandler<A extends AuthMode> = (args: HandlerArgs<A>) => Promise<object | Response | void>

interface Route {
  type: 'query' | 'procedure'
  auth: AuthMode
  handler: XrpcHandler<any>
  /** Skip lexicon input parsing (the handler reads the raw body). */
  rawInput?: boolean
}

/** Answers methods without a local handler (the proxy); without one they are 501. */
export type XrpcFallback = (c: Context<AppEnv>, nsid: string) => Promise<Response>

export class XrpcRouter {
  private routes = new Map<string, Route>()
  private fallback: XrpcFallback | null = null

  /** Methods with no route go here (checked before any lexicon rule: the service behind decides). */
  setFallback(fallback: XrpcFallback): void {
    this.fallback = fallback
  }

  query<A extends AuthMode>(nsid: string, auth: A, handler: XrpcHandler<A>): void {
    this.routes.set(nsid, { type: 'query', auth, handler })
  }

  procedure<A extends AuthMode>(nsid: string, auth: A, handler: XrpcHandler<A>, opts: { rawInput?: boolean } = {}): void {
    this.routes.set(nsid, { type: 'procedure', auth, handler, rawInput: opts.rawInput })
  }

  /** Mounts the dispatcher on the app. */
  mount(app: Hono<AppEnv>): void {
    app.all('/xrpc/:nsid', (c) => this.dispatch(c))
  }

  private async dispatch(c: Context<AppEnv>): Promise<Response> {
    // The raw path segment, as the reference reads it: nothing that is not an NSID is served or forwarded.
    const nsid = new URL(c.req.url).pathname.slice('/xrpc/'.length)
    if (!isValidNsid(nsid)) throw new InvalidRequestError('invalid xrpc path')
    const route = this.routes.get(nsid)
    if (!route && this.fallback) return this.fallback(c, nsid)
    const lexType = methodType(nsid)
    const expected = route?.type ?? (lexType === 'subscription' ? null : lexType)
    const method = c.req.method === 'HEAD' ? 'GET' : c.req.method
    if (expected) {
      const verb = expected === 'procedure' ? 'POST' : 'GET'
      if (method !== verb) throw new InvalidRequestError(`Incorrect HTTP method (${c.req.method}) expected ${verb}`)
    }
    if (!route) throw new MethodNotImplementedError()

    const deps = c.get('deps')
    const params = await parseParams(nsid, new URL(c.req.url).searchParams)
    const input = route.type === 'procedure' && !route.rawInput ? await parseInput(nsid, c.req.raw) : undefined
    if (route.auth !== 'none') {
      // As the reference: answers that depend on credentials are never shared by caches.
      c.header('cache-control', 'private')
      c.header('vary', 'Authorization', { append: true })
    }
    const auth = await authenticate(route.auth, deps, c.req.header('authorization'), nsid)
    if (auth && 'did' in auth) c.set('authDid', auth.did)

    const result = await route.handler({ deps, params, input, auth, req: c.req.raw, c })
    if (result instanceof Response) return result
    if (result === undefined) return c.body(null, 200)
    return c.json(result)
  }
}

const authenticate = async (mode: AuthMode, deps: Deps, header: string | undefined, nsid: string) => {
  switch (mode) {
    case 'none':
      return null
    case 'access':
      return verifyAccess(deps.config, header)
    case 'access-full':
      return verifyAccess(deps.config, header, ACCESS_FULL)
    case 'access-or-service':
      return verifyAccessOrServiceJwt(deps.config, header, nsid)
    case 'optional':
      return verifyOptionalAccess(deps.config, header)
    case 'refresh':
      return verifyRefresh(deps.config, header)
    case 'refresh-allow-expired':
      return verifyRefresh(deps.config, header, { allowExpired: true })
  }
}

/** Validates query params with the method's lexicon (as the reference: same messages). */
const parseParams = async (nsid: string, search: URLSearchParams): Promise<Record<string, unknown>> => {
  if (search.has('__proto__')) throw new InvalidRequestError('Invalid query parameter: __proto__', 'InvalidQueryParameter')
  const schema = await methodSchema(nsid)
  if (!schema) return Object.fromEntries(search)
  try {
    return schema.parameters.fromURLSearchParams(search) as Record<string, unknown>
  } catch (err) {
    if (err instanceof l.LexValidationError) {
      throw new InvalidRequestError(`Invalid ${nsid} params: ${err.issues.map((issue) => issue.message).join(', ')}`)
    }
    throw err
  }
}

/**
 * Reads a JSON body, converts it to the atproto data model ($link, $bytes,
 * blobs) and validates it with the method's lexicon. Handlers get lex values.
 */
const parseInput = async (nsid: string, req: Request): Promise<unknown> => {
  const schema = await methodSchema(nsid)
  if (!schema || schema.type !== 'procedure' || !schema.input.encoding) return undefined
  const declared = Number(req.headers.get('content-length') ?? 0)
  if (declared > MAX_JSON_BYTES) throw new XrpcError(413, 'request entity too large')
  const text = await req.text()
  if (text.length > MAX_JSON_BYTES) throw new XrpcError(413, 'request entity too large')
  if (text.length === 0) throw new InvalidRequestError('A request body is expected but none was provided')
  const encoding = (req.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase()
  if (!schema.input.matchesEncoding(encoding)) {
    throw new InvalidRequestError(`Wrong request encoding (Content-Type): ${encoding || 'none'}`)
  }
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (err) {
    throw new InvalidRequestError(`Invalid JSON body: ${errorMessage(err)}`)
  }
  if (!schema.input.schema) return body
  try {
    return schema.input.schema.parse(jsonToLex(body as never))
  } catch (err) {
    throw new InvalidRequestError(errorMessage(err))
  }
}

/** JSON bodies above this are refused (a commit's event may not exceed 2 MB anyway). */
const MAX_JSON_BYTES = 2_000_000

const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err))
