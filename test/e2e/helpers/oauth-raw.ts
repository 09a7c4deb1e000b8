/**
 * OAuth by hand, for tests that must control every byte the client sends:
 * DPoP proofs made with jose (any key, nonce, jti, htu or ath), PAR and token
 * requests, and the owner's approval driven through the real HTML forms with
 * plain HTTP (cookies and the anti-forgery token carried along), so a
 * negative test needs no browser.
 */
import { createHash, randomBytes } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose'

export interface Target {
  /** Where requests go (127.0.0.1). */
  url: string
  /** The issuer / origin the server believes it has (localhost), used in htu. */
  publicUrl: string
}

export interface DpopKey {
  privateKey: CryptoKey
  jwk: JWK
  jkt: string
}

export const newDpopKey = async (): Promise<DpopKey> => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
  const jwk = await exportJWK(publicKey)
  return { privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') }
}

export const b64urlSha256 = (value: string): string => createHash('sha256').update(value).digest('base64url')

export interface ProofOptions {
  method: string
  htu: string
  nonce?: string | null
  accessToken?: string
  jti?: string
  iat?: number
}

export const dpopProof = (key: DpopKey, o: ProofOptions): Promise<string> =>
  new SignJWT({
    htm: o.method,
    htu: o.htu,
    jti: o.jti ?? randomBytes(12).toString('base64url'),
    ...(o.nonce ? { nonce: o.nonce } : {}),
    ...(o.accessToken ? { ath: b64urlSha256(o.accessToken) } : {}),
  })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.jwk })
    .setIssuedAt(o.iat ?? Math.floor(Date.now() / 1000))
    .sign(key.privateKey)

export interface Answer {
  status: number
  headers: Headers
  body: Record<string, any> | null
  text: string
}

const answer = async (res: Response): Promise<Answer> => {
  const text = await res.text()
  let body: Record<string, any> | null = null
  try {
    body = JSON.parse(text)
  } catch {
    body = null
  }
  return { status: res.status, headers: res.headers, body, text }
}

export const pkce = (): { verifier: string; challenge: string } => {
  const verifier = randomBytes(32).toString('base64url')
  return { verifier, challenge: b64urlSha256(verifier) }
}

/** A loopback client id for `redirectUri` and `scope`. */
export const loopbackClientId = (redirectUri: string, scope: string): string => `http://localhost?${new URLSearchParams({ redirect_uri: redirectUri, scope })}`

/**
 * A hand-driven DPoP client of one server: remembers the last nonce the
 * server gave (per origin, as real clients do) and retries once on
 * use_dpop_nonce unless told not to.
 */
export class RawClient {
  nonce: string | null = null

  constructor(
    readonly target: Target,
    readonly key: DpopKey,
  ) {}

  /** POSTs a form to an AS endpoint with a DPoP proof (`proof` overrides it; null sends none). */
  async post(path: string, form: Record<string, string>, opts: { proof?: string | null; retryNonce?: boolean; proofOptions?: Partial<ProofOptions> } = {}): Promise<Answer> {
    const send = async (): Promise<Answer> => {
      const proof =
        opts.proof !== undefined ? opts.proof : await dpopProof(this.key, { method: 'POST', htu: `${this.target.publicUrl}${path}`, nonce: this.nonce, ...opts.proofOptions })
      const res = await fetch(`${this.target.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...(proof ? { dpop: proof } : {}) },
        body: new URLSearchParams(form).toString(),
      })
      const got = await answer(res)
      if (got.headers.get('dpop-nonce')) this.nonce = got.headers.get('dpop-nonce')
      return got
    }
    const first = await send()
    if (opts.retryNonce !== false && opts.proof === undefined && first.body?.error === 'use_dpop_nonce') return send()
    return first
  }

  /** An XRPC call with `Authorization: DPoP <token>`; retries once on a nonce challenge. */
  async xrpc(method: 'GET' | 'POST', nsidAndQuery: string, token: string, opts: { body?: unknown; contentType?: string; proof?: string; retryNonce?: boolean; headers?: Record<string, string> } = {}): Promise<Answer> {
    const path = `/xrpc/${nsidAndQuery}`
    const send = async (): Promise<Answer> => {
      const proof = opts.proof ?? (await dpopProof(this.key, { method, htu: `${this.target.publicUrl}${path.split('?')[0]}`, nonce: this.nonce, accessToken: token }))
      const body = opts.body === undefined ? undefined : opts.body instanceof Uint8Array ? opts.body : JSON.stringify(opts.body)
      const res = await fetch(`${this.target.url}${path}`, {
        method,
        headers: {
          authorization: `DPoP ${token}`,
          dpop: proof,
          ...(body !== undefined ? { 'content-type': opts.contentType ?? 'application/json' } : {}),
          ...opts.headers,
        },
        body,
      })
      const got = await answer(res)
      if (got.headers.get('dpop-nonce')) this.nonce = got.headers.get('dpop-nonce')
      return got
    }
    const first = await send()
    if (opts.retryNonce !== false && !opts.proof && first.status === 401 && (first.headers.get('www-authenticate') ?? '').includes('use_dpop_nonce')) return send()
    return first
  }

  /** PAR for a public client; returns the request_uri answer as is. */
  par(params: Record<string, string>): Promise<Answer> {
    return this.post('/oauth/par', { response_type: 'code', code_challenge_method: 'S256', state: randomBytes(8).toString('hex'), ...params })
  }
}

/** A cookie jar for driving the HTML forms with fetch. */
export class Browserless {
  private cookies = new Map<string, string>()

  constructor(readonly target: Target) {}

  private remember(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';')
      const [name, ...value] = pair.split('=')
      if (/max-age=0|expires=thu, 01 jan 1970/i.test(line)) this.cookies.delete(name.trim())
      else this.cookies.set(name.trim(), value.join('='))
    }
  }

  private get cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
  }

  async get(path: string, headers: Record<string, string> = {}): Promise<Answer & { html: string }> {
    const res = await fetch(`${this.target.url}${path}`, { headers: { cookie: this.cookieHeader, ...headers }, redirect: 'manual' })
    this.remember(res)
    const got = await answer(res)
    return { ...got, html: got.text }
  }

  async post(path: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<Answer & { html: string; location: string | null }> {
    const res = await fetch(`${this.target.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: this.cookieHeader, origin: this.target.publicUrl, ...headers },
      body: new URLSearchParams(form).toString(),
      redirect: 'manual',
    })
    this.remember(res)
    const got = await answer(res)
    return { ...got, html: got.text, location: res.headers.get('location') }
  }

  /** The hidden fields of the first form in `html`. */
  static hidden(html: string): Record<string, string> {
    const out: Record<string, string> = {}
    for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) out[m[1]] = m[2].replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>')
    return out
  }
}

/**
 * The owner approves (or denies) a pushed request through the real forms:
 * GET the page, sign in if asked, then press the button. Returns the 303's
 * Location (the app's redirect URI with iss, state and code or error).
 */
export const decideByForms = async (owner: Browserless, clientId: string, requestUri: string, password: string, decision: 'approve' | 'deny' = 'approve'): Promise<string> => {
  const path = `/oauth/authorize?${new URLSearchParams({ client_id: clientId, request_uri: requestUri })}`
  let page = await owner.get(path)
  if (page.status !== 200) throw new Error(`authorization page: ${page.status} ${page.text.slice(0, 300)}`)
  let fields = Browserless.hidden(page.html)
  if (page.html.includes('id="password"')) {
    const signedIn = await owner.post('/oauth/authorize', { ...fields, action: 'sign-in', password, remember: '1' })
    if (signedIn.status !== 200) throw new Error(`sign-in: ${signedIn.status} ${signedIn.text.slice(0, 300)}`)
    page = signedIn
    fields = Browserless.hidden(page.html)
  }
  const decided = await owner.post('/oauth/authorize', { ...fields, action: decision })
  if (decided.status !== 303 || !decided.location) throw new Error(`${decision}: ${decided.status} ${decided.text.slice(0, 300)}`)
  return decided.location
}

/** An RFC 7523 client assertion, as a confidential client signs one for each PAR and token request. */
export const clientAssertion = (key: { privateKey: CryptoKey; kid: string }, clientId: string, issuer: string, overrides: { jti?: string; iat?: number } = {}): Promise<string> =>
  new SignJWT({ jti: overrides.jti ?? randomBytes(12).toString('base64url') })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(issuer)
    .setIssuedAt(overrides.iat ?? Math.floor(Date.now() / 1000))
    .sign(key.privateKey)

export const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
