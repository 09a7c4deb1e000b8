/**
 * OAuth clients: the loopback development client (metadata derived from its
 * id) and clients whose id is the URL of their metadata document, fetched
 * through the SSRF-safe fetch and validated (client-metadata.ts). Validated
 * documents, and the JWKS of confidential clients, are cached in KV for ten
 * minutes (the reference's TTL): a cache that may briefly lag behind a client
 * changing its document, which is what the spec allows.
 */
import type { OAuthClientMetadata } from '@atproto/oauth-types'
import type { KvCache } from '../cache/kv-cache'
import type { Config } from '../env'
import { checkPublicJwks, clientKind, loopbackClientMetadata, validateClientMetadata, type ClientKind } from './client-metadata'
import { invalidClientMetadata, OAuthError } from './errors'
import { sha256b64url } from './keys'
import { SafeFetchError, safeFetchJson } from './safe-fetch'

const CACHE_TTL_S = 600
const FETCH_TIMEOUT_MS = 8_000
const MAX_DOCUMENT_BYTES = 256 * 1024

export interface OAuthClient {
  id: string
  kind: ClientKind
  metadata: OAuthClientMetadata
  /** Authenticates with private_key_jwt (longer sessions); public clients use "none". */
  confidential: boolean
}

export interface ClientContext {
  config: Config
  cache: KvCache
}

/** The name shown to the owner: the metadata's, else a description of the id. */
export const clientDisplayName = (client: OAuthClient): string =>
  client.metadata.client_name?.trim() || (client.kind === 'loopback' ? 'Development client (localhost)' : new URL(client.id).hostname)

const cacheKey = async (kind: string, url: string): Promise<string> => `oauth-${kind}:v1:${await sha256b64url(url)}`

const fetchMetadata = async (ctx: ClientContext, clientId: string): Promise<unknown> => {
  try {
    return await safeFetchJson(ctx.config, clientId, { maxBytes: MAX_DOCUMENT_BYTES, timeoutMs: FETCH_TIMEOUT_MS, strictType: true })
  } catch (err) {
    if (err instanceof SafeFetchError) throw invalidClientMetadata(`Unable to obtain client metadata for "${clientId}": ${err.message}`)
    throw err
  }
}

/** The client named `clientId`, with validated metadata; OAuth errors for unknown or broken clients. */
export const loadClient = async (ctx: ClientContext, clientId: string): Promise<OAuthClient> => {
  const kind = clientKind(clientId)
  let metadata: OAuthClientMetadata
  if (kind === 'loopback') {
    metadata = validateClientMetadata(clientId, kind, loopbackClientMetadata(clientId))
  } else {
    const key = await cacheKey('client', clientId)
    const cached = await ctx.cache.getJson<OAuthClientMetadata>(key)
    if (cached) {
      metadata = cached
    } else {
      const document = await fetchMetadata(ctx, clientId)
      try {
        metadata = validateClientMetadata(clientId, kind, document)
      } catch (err) {
        // Name the document, so the developer reading the error knows which one to fix.
        if (err instanceof OAuthError) throw new OAuthError(err.status, err.error, `Client metadata at "${clientId}" is invalid: ${err.description}`)
        throw err
      }
      await ctx.cache.put(key, metadata, CACHE_TTL_S)
    }
  }
  return { id: clientId, kind, metadata, confidential: metadata.token_endpoint_auth_method === 'private_key_jwt' }
}

export interface Jwk {
  kty: string
  kid?: string
  alg?: string
  use?: string
  revoked?: unknown
  [member: string]: unknown
}

/** The public keys of a confidential client: inline `jwks`, or `jwks_uri` fetched (cached unless `fresh`). */
export const clientJwks = async (ctx: ClientContext, client: OAuthClient, opts: { fresh?: boolean } = {}): Promise<Jwk[]> => {
  if (client.metadata.jwks) return client.metadata.jwks.keys as Jwk[]
  const uri = client.metadata.jwks_uri
  if (!uri) return []
  const key = await cacheKey('jwks', uri)
  if (!opts.fresh) {
    const cached = await ctx.cache.getJson<Jwk[]>(key)
    if (cached) return cached
  }
  let jwks: unknown
  try {
    jwks = await safeFetchJson(ctx.config, uri, { maxBytes: MAX_DOCUMENT_BYTES, timeoutMs: FETCH_TIMEOUT_MS, strictType: false })
  } catch (err) {
    if (err instanceof SafeFetchError) throw invalidClientMetadata(`Unable to obtain the keys of "${client.id}" from ${uri}: ${err.message}`)
    throw err
  }
  const problem = checkPublicJwks(jwks)
  if (problem) throw invalidClientMetadata(`Invalid JWKS at ${uri}: ${problem}`)
  const keys = (jwks as { keys: Jwk[] }).keys
  await ctx.cache.put(key, keys, CACHE_TTL_S)
  return keys
}
