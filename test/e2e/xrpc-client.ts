/**
 * A raw XRPC client for the e2e suites: plain `fetch`, so a test sees the exact
 * status, headers and body the server sent (the official client turns errors
 * into exceptions and hides the wire format). Plus the JWT and CAR helpers the
 * suites share.
 */
import { createHmac } from 'node:crypto'
import { type BlockMap, readCarWithRoot, verifyRepo } from '@atproto/repo'
import { CID } from 'multiformats/cid'

export type Params = Record<string, string | number | boolean | string[] | undefined>

export interface XrpcResponse<T = any> {
  status: number
  headers: Headers
  /** Parsed JSON when the server said application/json, else undefined. */
  body: T
  bytes: Uint8Array
  text: string
}

interface Target {
  url: string
}

const FETCH_TIMEOUT_MS = 30_000

/** Any HTTP request to the PDS, with the body read and JSON parsed if declared. */
export const request = async (
  pds: Target,
  path: string,
  init: RequestInit = {},
): Promise<XrpcResponse> => {
  const res = await fetch(`${pds.url}${path}`, {
    ...init,
    signal: init.signal ?? AbortSignal.timeout(FETCH_TIMEOUT_MS),
  })
  const bytes = new Uint8Array(await res.arrayBuffer())
  const text = new TextDecoder().decode(bytes)
  let body: any
  if ((res.headers.get('content-type') ?? '').includes('application/json')) {
    try {
      body = JSON.parse(text)
    } catch {
      body = undefined
    }
  }
  return { status: res.status, headers: res.headers, body, bytes, text }
}

const query = (params: Params = {}): string => {
  const qs = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) continue
    if (Array.isArray(v)) for (const item of v) qs.append(k, item)
    else qs.append(k, String(v))
  }
  const s = qs.toString()
  return s ? `?${s}` : ''
}

const authHeader = (token?: string): Record<string, string> =>
  token ? { authorization: `Bearer ${token}` } : {}

/** GET /xrpc/<nsid>?params */
export const xget = (pds: Target, nsid: string, params?: Params, token?: string): Promise<XrpcResponse> =>
  request(pds, `/xrpc/${nsid}${query(params)}`, { headers: authHeader(token) })

/** POST /xrpc/<nsid> with a JSON body (or none). */
export const xpost = (pds: Target, nsid: string, body?: unknown, token?: string): Promise<XrpcResponse> =>
  request(pds, `/xrpc/${nsid}`, {
    method: 'POST',
    headers: {
      ...authHeader(token),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  })

/** A short description of a response, for assertion messages. */
export const show = (res: XrpcResponse): string =>
  `${res.status} ${res.headers.get('content-type') ?? ''} ${res.text.slice(0, 500)}`

/** Fails with the whole response in the message unless the status matches. */
export const expectStatus = (res: XrpcResponse, status: number): XrpcResponse => {
  if (res.status !== status) throw new Error(`expected HTTP ${status}, got ${show(res)}`)
  return res
}

/** Fails unless the response is an XRPC error with this status and error name. */
export const expectXrpcError = (
  res: XrpcResponse,
  status: number,
  error: string,
  message?: string | RegExp,
): void => {
  const ok =
    res.status === status &&
    res.body?.error === error &&
    (message === undefined ||
      (typeof message === 'string' ? res.body?.message === message : message.test(res.body?.message ?? '')))
  if (!ok) {
    throw new Error(
      `expected ${status} {error: ${error}${message ? `, message: ${message}` : ''}}, got ${show(res)}`,
    )
  }
}

export interface Session {
  accessJwt: string
  refreshJwt: string
  did: string
  handle: string
  [k: string]: unknown
}

/** createSession over the wire; throws with the response unless it is 200. */
export const createSession = async (
  pds: Target,
  identifier: string,
  password: string,
): Promise<Session> => {
  const res = await xpost(pds, 'com.atproto.server.createSession', { identifier, password })
  expectStatus(res, 200)
  return res.body as Session
}

const b64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url')

/** Signs an HS256 JWT with the given secret (the UTF-8 bytes of the string). */
export const signHs256 = (
  secret: string,
  payload: Record<string, unknown>,
  header: Record<string, unknown> = {},
): string => {
  const h = b64url(JSON.stringify({ alg: 'HS256', ...header }))
  const p = b64url(JSON.stringify(payload))
  const sig = createHmac('sha256', Buffer.from(secret, 'utf8')).update(`${h}.${p}`).digest()
  return `${h}.${p}.${b64url(sig)}`
}

/** The payload of a JWT, unverified. */
export const decodeJwt = (jwt: string): Record<string, any> => {
  const part = jwt.split('.')[1]
  if (!part) throw new Error(`not a JWT: ${jwt}`)
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
}

/** The header of a JWT, unverified. */
export const decodeJwtHeader = (jwt: string): Record<string, any> =>
  JSON.parse(Buffer.from(jwt.split('.')[0] ?? '', 'base64url').toString('utf8'))

/** A record written now: the `createdAt` most lexicons want. */
export const now = (): string => new Date().toISOString()

export const post = (text: string): Record<string, unknown> => ({
  $type: 'app.bsky.feed.post',
  text,
  createdAt: now(),
})

export interface RepoCheck {
  root: string
  rev: string
  /** "collection/rkey" → record CID */
  records: Map<string, string>
}

/** Reads a getRepo CAR and verifies its commit signature and MST; returns the records. */
export const verifyRepoCar = async (bytes: Uint8Array, did: string, didKey: string): Promise<RepoCheck> => {
  const car = await readCarWithRoot(bytes)
  const verified = await verifyRepo(car.blocks, car.root, did, didKey)
  const records = new Map<string, string>()
  for (const c of verified.creates) records.set(`${c.collection}/${c.rkey}`, c.cid.toString())
  return { root: car.root.toString(), rev: verified.commit.rev, records }
}

/** Every record the repo lists through com.atproto.repo.listRecords, "collection/rkey" → CID. */
export const listAllRecords = async (pds: Target, did: string): Promise<Map<string, string>> => {
  const desc = expectStatus(await xget(pds, 'com.atproto.repo.describeRepo', { repo: did }), 200)
  const out = new Map<string, string>()
  for (const collection of desc.body.collections as string[]) {
    let cursor: string | undefined
    for (let page = 0; page < 1000; page++) {
      const res = expectStatus(
        await xget(pds, 'com.atproto.repo.listRecords', { repo: did, collection, limit: 100, cursor }),
        200,
      )
      for (const r of res.body.records) out.set(r.uri.split('/').slice(3).join('/'), r.cid)
      cursor = res.body.cursor
      if (!cursor || res.body.records.length === 0) break
    }
  }
  return out
}

/** The rkey (last path segment) of an at:// URI. */
export const rkeyOf = (uri: string): string => uri.split('/').pop() ?? ''

/** The CID type @atproto/repo's BlockMap and proofs take. */
export type RepoCid = Parameters<BlockMap['has']>[0]

/** Parses a CID string for use with @atproto/repo (multiformats' CID at runtime). */
export const cid = (s: string): RepoCid => CID.parse(s) as unknown as RepoCid
