/**
 * The few XRPC calls `npm run migrate` makes, with plain fetch (Node 22):
 * JSON in and out, errors as exceptions that say which call failed and what
 * the server answered, and streams passed through without buffering.
 */

export class XrpcCallError extends Error {
  constructor(call, status, body) {
    super(`${call}: HTTP ${status}${body?.error ? ` ${body.error}` : ''}${body?.message ? `: ${body.message}` : ''}`)
    this.status = status
    this.error = body?.error
  }
}

/** A PDS at `url`, optionally with a session. */
export class Pds {
  constructor(url, token = null) {
    this.url = url.replace(/\/+$/, '')
    this.token = token
  }

  withToken(token) {
    return new Pds(this.url, token)
  }

  async call(nsid, { params, body, headers = {}, token = this.token, raw = false, method } = {}) {
    const qs = params ? `?${new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]))}` : ''
    const isStream = body instanceof ReadableStream || body instanceof Uint8Array
    const res = await fetch(`${this.url}/xrpc/${nsid}${qs}`, {
      method: method ?? (body !== undefined ? 'POST' : 'GET'),
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined && !isStream ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : isStream ? body : JSON.stringify(body),
      ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
      signal: AbortSignal.timeout(30 * 60_000),
    })
    if (!res.ok) {
      const text = await res.text().catch(() => '')
      let parsed = null
      try {
        parsed = JSON.parse(text)
      } catch {
        parsed = { message: text.slice(0, 300) }
      }
      throw new XrpcCallError(nsid, res.status, parsed)
    }
    if (raw) return res
    const type = res.headers.get('content-type') ?? ''
    return type.includes('json') ? res.json() : undefined
  }

  /** createSession; returns a Pds with the session and the session's body. */
  async login(identifier, password) {
    const session = await this.call('com.atproto.server.createSession', { body: { identifier, password }, token: null })
    return { pds: this.withToken(session.accessJwt), session }
  }
}
