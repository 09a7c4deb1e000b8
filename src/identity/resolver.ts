/**
 * DID document resolution for forwarding: did:plc through the PLC directory,
 * did:web through `https://<host>/.well-known/did.json` (http for localhost,
 * as `@atproto/identity` does). Documents are cached in the isolate and in
 * KV for an hour, so a proxied call rarely pays a resolution round trip.
 */
import { formatDidKey, multibaseToBytes } from '@atproto/crypto'
import type { KvCache } from '../cache/kv-cache'
import type { Config } from '../env'
import { buildDidDocument, isOwnDidWeb } from './did-doc'

export interface ResolvedDidDocument {
  id: string
  alsoKnownAs?: string[]
  verificationMethod?: { id: string; type: string; controller?: string; publicKeyMultibase?: string }[]
  service?: { id: string; type: string; serviceEndpoint: unknown }[]
}

export class DidResolutionError extends Error {
  override name = 'DidResolutionError'
}

const CACHE_TTL_S = 3600
const FETCH_TIMEOUT_MS = 3000
const MAX_DOC_BYTES = 64 * 1024

const memory = new Map<string, { doc: ResolvedDidDocument; expiresAt: number }>()

const documentUrl = (cfg: Config, did: string): string => {
  if (did.startsWith('did:plc:')) return `${cfg.plcUrl}/${encodeURIComponent(did)}`
  if (did.startsWith('did:web:')) {
    const rest = did.slice('did:web:'.length)
    // Path-based did:web (did:web:host:path) is not used by atproto.
    if (rest.includes(':')) throw new DidResolutionError(`Unsupported did:web with a path: ${did}`)
    const host = decodeURIComponent(rest)
    const scheme = /^localhost(:\d+)?$/.test(host) ? 'http' : 'https'
    return `${scheme}://${host}/.well-known/did.json`
  }
  throw new DidResolutionError(`Unsupported DID method: ${did}`)
}

const fetchDocument = async (cfg: Config, did: string): Promise<ResolvedDidDocument> => {
  const url = documentUrl(cfg, did)
  let res: Response
  try {
    res = await fetch(url, { headers: { accept: 'application/did+ld+json, application/json' }, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) })
  } catch (err) {
    throw new DidResolutionError(`Could not fetch the DID document of ${did}: ${(err as Error).message}`)
  }
  if (!res.ok) {
    await res.body?.cancel()
    throw new DidResolutionError(`DID document of ${did} not found (HTTP ${res.status})`)
  }
  const text = await res.text()
  if (text.length > MAX_DOC_BYTES) throw new DidResolutionError(`DID document of ${did} is too large`)
  let doc: ResolvedDidDocument
  try {
    doc = JSON.parse(text)
  } catch {
    throw new DidResolutionError(`DID document of ${did} is not JSON`)
  }
  if (doc?.id !== did) throw new DidResolutionError(`DID document of ${did} names another DID`)
  return doc
}

export interface ResolveOptions {
  /** Fetch afresh (and refresh the caches): for checks that must see the document as it is now. */
  fresh?: boolean
  /** The account's current handle, for the did:web document this PDS serves itself. */
  ownHandle?: string
}

/** The DID document of `did`, from cache when fresh. */
export const resolveDid = async (cfg: Config, cache: KvCache, did: string, opts: ResolveOptions = {}): Promise<ResolvedDidDocument> => {
  // Our own did:web document is never fetched over the network.
  if (did === cfg.did && isOwnDidWeb(cfg)) return buildDidDocument(cfg, opts.ownHandle ?? cfg.handle)
  const now = Date.now()
  const hit = opts.fresh ? undefined : memory.get(did)
  if (hit && hit.expiresAt > now) return hit.doc
  const kvKey = `did-doc:${did}`
  let doc = opts.fresh ? null : await cache.getJson<ResolvedDidDocument>(kvKey)
  if (!doc || doc.id !== did) {
    doc = await fetchDocument(cfg, did)
    await cache.put(kvKey, doc, CACHE_TTL_S)
  }
  memory.set(did, { doc, expiresAt: now + CACHE_TTL_S * 1000 })
  return doc
}

/** Entries of a document are named `#id` or `<did>#id`. */
const hasId = (entry: { id: string }, doc: ResolvedDidDocument, id: string): boolean => {
  const fragment = id.startsWith('#') ? id : `#${id}`
  return entry.id === fragment || entry.id === `${doc.id}${fragment}`
}

/**
 * The account's repo signing key (verification method `#atproto`) as a
 * did:key, or null. Documents list it as a `Multikey` (did:key's own
 * multibase) or, in older form, as `EcdsaSecp256k1VerificationKey2019` /
 * `EcdsaSecp256r1VerificationKey2019` with the raw key in multibase (what
 * the PLC directory still serves for some DIDs).
 */
export const atprotoSigningKey = (doc: ResolvedDidDocument): string | null => {
  const method = doc.verificationMethod?.find((m) => hasId(m, doc, 'atproto'))
  const multibase = method?.publicKeyMultibase
  if (!method || !multibase) return null
  try {
    if (method.type === 'Multikey') return `did:key:${multibase}`
    if (method.type === 'EcdsaSecp256k1VerificationKey2019') return formatDidKey('ES256K', multibaseToBytes(multibase))
    if (method.type === 'EcdsaSecp256r1VerificationKey2019') return formatDidKey('ES256', multibaseToBytes(multibase))
  } catch {
    return null
  }
  return null
}

/** The endpoint of service `#id` in a document (ids may be relative or absolute), or null. */
export const serviceEndpoint = (doc: ResolvedDidDocument, id: string): string | null => {
  const service = doc.service?.find((s) => hasId(s, doc, id))
  if (!service || typeof service.serviceEndpoint !== 'string') return null
  try {
    const url = new URL(service.serviceEndpoint)
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return null
    return url.href.replace(/\/+$/, '')
  } catch {
    return null
  }
}
