/**
 * Sends one XRPC call on to another service and turns its answer into ours,
 * as the reference PDS's pipethrough does: the request body streams through
 * untouched, the service token replaces the client's session token, and only
 * the headers the protocol defines cross in either direction. An upstream
 * error keeps its status, name and message (a 500 becomes 502
 * UpstreamFailure); an unreachable service is 502 UpstreamFailure.
 */
import { readBodyUpTo } from '../bounded-body'
import { XrpcError } from '../errors'

/** Request headers a client may address to the service behind us. */
const FORWARDED_REQUEST_HEADERS = ['accept-language', 'atproto-accept-labelers', 'x-bsky-topics']
/** Body headers, forwarded with the body. */
const FORWARDED_BODY_HEADERS = ['content-type', 'content-encoding']
/** Response headers passed back to the client (besides the content headers on success). */
const RETURNED_HEADERS = ['atproto-repo-rev', 'atproto-content-labelers', 'retry-after']
const RETURNED_CONTENT_HEADERS = ['content-type', 'content-language']

/** Upstream error bodies are read only this far. */
const MAX_ERROR_BODY_BYTES = 64 * 1024

export interface ForwardOptions {
  /** Base URL of the service. */
  origin: string
  method: 'GET' | 'HEAD' | 'POST'
  /** Path and query exactly as the client sent them. */
  pathAndQuery: string
  incoming: Headers
  body: ReadableStream<Uint8Array> | null
  serviceToken: string | null
}

export const forwardXrpc = async (opts: ForwardOptions): Promise<Response> => {
  const headers = new Headers()
  for (const name of FORWARDED_REQUEST_HEADERS) copyHeader(opts.incoming, headers, name)
  // The atproto extension headers are all forwarded, as the reference does.
  for (const [name, value] of opts.incoming) if (name.startsWith('x-atproto-')) headers.set(name, value)
  if (opts.body) for (const name of FORWARDED_BODY_HEADERS) copyHeader(opts.incoming, headers, name)
  if (opts.serviceToken) headers.set('authorization', `Bearer ${opts.serviceToken}`)

  let upstream: Response
  try {
    upstream = await fetch(`${opts.origin}${opts.pathAndQuery}`, {
      method: opts.method,
      headers,
      body: opts.body,
      // A redirect would leave the service the token was minted for.
      redirect: 'manual',
    })
  } catch {
    throw new XrpcError(502, 'Upstream service unreachable')
  }

  if (upstream.status >= 400) return upstreamError(upstream)

  const out = new Headers()
  for (const name of [...RETURNED_CONTENT_HEADERS, ...RETURNED_HEADERS]) copyHeader(upstream.headers, out, name)
  return new Response(opts.method === 'HEAD' ? null : upstream.body, { status: upstream.status, headers: out })
}

const copyHeader = (from: Headers, to: Headers, name: string): void => {
  const value = from.get(name)
  if (value !== null) to.set(name, value)
}

/** The upstream's own error, in our error format and with its protocol headers. */
const upstreamError = async (upstream: Response): Promise<Response> => {
  const parsed = await readErrorBody(upstream)
  const status = upstream.status === 500 ? 502 : upstream.status > 599 ? 500 : upstream.status
  const err = new XrpcError(status, parsed.message, parsed.error)
  const headers = new Headers({ 'content-type': 'application/json; charset=utf-8' })
  for (const name of RETURNED_HEADERS) copyHeader(upstream.headers, headers, name)
  return new Response(JSON.stringify(err.body), { status: err.status, headers })
}

const readErrorBody = async (upstream: Response): Promise<{ error?: string; message?: string }> => {
  const type = upstream.headers.get('content-type') ?? ''
  if (!/application\/(?:\w+\+)?json/i.test(type) || !upstream.body) {
    await upstream.body?.cancel()
    return {}
  }
  try {
    const bytes = await readBodyUpTo(upstream.body, MAX_ERROR_BODY_BYTES)
    if (!bytes) return {}
    const body = JSON.parse(new TextDecoder().decode(bytes))
    return {
      error: typeof body?.error === 'string' ? body.error : undefined,
      message: typeof body?.message === 'string' ? body.message : undefined,
    }
  } catch {
    return {}
  }
}
