/**
 * The authorization server's JSON endpoints and discovery documents:
 * `/.well-known/oauth-protected-resource`, `/.well-known/oauth-authorization-server`,
 * `/oauth/jwks`, `POST /oauth/par`, `/oauth/token`, `/oauth/revoke`.
 *
 * Every PAR/token/revoke answer, error or not, carries a fresh `DPoP-Nonce`
 * and `Cache-Control: no-store`; errors are RFC 6749 JSON with the status the
 * error says (and a `WWW-Authenticate` challenge for DPoP proof errors). An
 * unexpected failure is `500 server_error`, logged under the request id,
 * never echoed. CORS comes from the app-wide middleware (any origin, the DPoP
 * headers exposed), since browser apps call these endpoints.
 */
import type { Context, Hono } from 'hono'
import type { Config } from '../env'
import { oauthContext, type OAuthContext } from '../oauth/context'
import { invalidRequest, OAuthError } from '../oauth/errors'
import { authorizationServerMetadata, protectedResourceMetadata } from '../oauth/metadata'
import { pushAuthorizationRequest, type DpopInput } from '../oauth/par'
import { revokeToken } from '../oauth/revoke'
import { exchangeToken } from '../oauth/token'
import type { AppEnv } from './context'

const MAX_BODY_BYTES = 64 * 1024
const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' }

/** The request's URL as clients address this server: our configured origin, never the Host header. */
export const publicRequestUrl = (config: Config, req: Request): string => `${config.serviceUrl}${new URL(req.url).pathname}`

/** Reads an OAuth request body: form-encoded (what clients send) or JSON, as the reference accepts. */
export const readOAuthBody = async (req: Request): Promise<Record<string, unknown>> => {
  const [type, ...params] = (req.headers.get('content-type') ?? '').split(';').map((p) => p.trim().toLowerCase())
  const charset = params.find((p) => p.startsWith('charset='))?.slice('charset='.length)
  if (charset !== undefined && charset !== 'utf-8') throw new OAuthError(415, 'invalid_request', `Unsupported charset "${charset}"`)
  const isForm = type === 'application/x-www-form-urlencoded'
  const isJson = /^application\/(.+\+)?json$/.test(type ?? '')
  if (!isForm && !isJson) throw new OAuthError(415, 'invalid_request', `Unsupported content type "${type || 'none'}"`)
  const text = await req.text()
  if (text.length > MAX_BODY_BYTES) throw invalidRequest('Request body too large')
  let body: Record<string, unknown>
  if (isForm) {
    body = {}
    for (const [k, v] of new URLSearchParams(text)) {
      if (k in body) throw invalidRequest(`Duplicate parameter "${k}"`)
      body[k] = v
    }
  } else {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      throw invalidRequest('Invalid JSON body')
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw invalidRequest('The body must be a JSON object')
    body = parsed as Record<string, unknown>
  }
  if (Object.hasOwn(body, '__proto__')) throw invalidRequest('Invalid parameter "__proto__"')
  return body
}

/** The JSON answer for an error thrown by an OAuth endpoint. */
export const oauthErrorResponse = (c: Context<AppEnv>, err: unknown, headers: Record<string, string>): Response => {
  if (err instanceof OAuthError) {
    const challenge: Record<string, string> = err.challenge ? { 'www-authenticate': err.wwwAuthenticate } : {}
    return c.json(err.body, err.status as 400, { ...headers, ...challenge })
  }
  console.error(JSON.stringify({ requestId: c.get('requestId'), error: String((err as Error)?.stack ?? err) }))
  // As the reference: a library refusing its input (zod, jose, a TypeError) is the request's fault.
  const name = (err as Error)?.name ?? ''
  if (err instanceof TypeError || name === 'ZodError' || name.startsWith('JOSE') || name.startsWith('JW')) {
    return c.json({ error: 'invalid_request', error_description: (err as Error).message }, 400, headers)
  }
  return c.json({ error: 'server_error', error_description: 'Server error' }, 500, headers)
}

/** Runs an AS endpoint: body parsed, DPoP input gathered, nonce and no-store on every answer. */
const endpoint =
  (run: (ctx: OAuthContext, body: Record<string, unknown>, dpop: DpopInput) => Promise<{ status: 200 | 201; body: object }>) =>
  async (c: Context<AppEnv>): Promise<Response> => {
    const ctx = await oauthContext(c.get('deps'))
    const headers = { ...NO_STORE, 'dpop-nonce': await ctx.nonces.next(ctx.now) }
    try {
      const body = await readOAuthBody(c.req.raw)
      const dpop: DpopInput = { proof: c.req.header('dpop') ?? null, method: c.req.method, url: publicRequestUrl(ctx.config, c.req.raw) }
      const result = await run(ctx, body, dpop)
      return c.json(result.body, result.status, headers)
    } catch (err) {
      return oauthErrorResponse(c, err, headers)
    }
  }

const methodNotAllowed = (c: Context<AppEnv>): Response => c.json({ error: 'invalid_request', error_description: 'Method not allowed' }, 405, { allow: 'POST' })

export const mountOAuthEndpoints = (app: Hono<AppEnv>): void => {
  app.get('/.well-known/oauth-protected-resource', (c) => c.json(protectedResourceMetadata(c.get('deps').config.serviceUrl)))
  app.get('/.well-known/oauth-authorization-server', (c) =>
    c.json(authorizationServerMetadata(c.get('deps').config.serviceUrl), 200, { 'cache-control': 'max-age=300' }),
  )
  // Tokens are opaque and checked by this server alone: there is no key to publish.
  app.get('/oauth/jwks', (c) => c.json({ keys: [] }, 200, { 'cache-control': 'max-age=300' }))

  app.post(
    '/oauth/par',
    endpoint(async (ctx, body, dpop) => ({ status: 201, body: await pushAuthorizationRequest(ctx, body, dpop) })),
  )
  app.post(
    '/oauth/token',
    endpoint(async (ctx, body, dpop) => ({ status: 200, body: await exchangeToken(ctx, body, dpop) })),
  )
  app.post(
    '/oauth/revoke',
    endpoint(async (ctx, body, dpop) => {
      await revokeToken(ctx, body, dpop)
      return { status: 200, body: {} }
    }),
  )
  for (const path of ['/oauth/par', '/oauth/token', '/oauth/revoke']) {
    app.on(['GET', 'PUT', 'DELETE', 'PATCH'], path, methodNotAllowed)
  }
}
