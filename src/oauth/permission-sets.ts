/**
 * Permission sets (`include:<nsid>` scopes), resolved as the atproto Lexicon
 * spec publishes them: the DNS TXT record `_lexicon.<authority>` (the NSID's
 * domain part reversed, no recursion) names a DID; the DID document names its
 * PDS and signing key; the PDS serves the `com.atproto.lexicon.schema` record
 * whose key is the NSID with a signed proof (`com.atproto.sync.getRecord`),
 * which is verified against that key. The lexicon's `main` definition must be
 * a `permission-set`.
 *
 * Cached in KV, as the spec recommends: refreshed when older than 24 hours,
 * and a stale copy still serves a new session for up to 90 days when the
 * source cannot be reached. (Existing sessions keep what they were granted if
 * their refresh cannot resolve a set: src/oauth/scopes.ts.)
 */
import type { LexiconPermissionSet } from '@atproto/oauth-scopes'
import { verifyRecords } from '@atproto/repo'
import { dnsQuery, txtDids } from '../identity/dns'
import { atprotoSigningKey, DidResolutionError, resolveDid, serviceEndpoint } from '../identity/resolver'
import type { OAuthContext } from './context'
import { safeFetch, SafeFetchError } from './safe-fetch'

const STALE_AFTER_MS = 24 * 3600 * 1000
const EXPIRE_AFTER_MS = 90 * 24 * 3600 * 1000
const FETCH_TIMEOUT_MS = 8_000
const MAX_CAR_BYTES = 1024 * 1024
const SCHEMA_COLLECTION = 'com.atproto.lexicon.schema'

/** A permission set could not be resolved; the message says where it failed. */
export class PermissionSetError extends Error {
  override name = 'PermissionSetError'
}

interface CachedSet {
  set: LexiconPermissionSet
  fetchedAt: number
}

/** `app.example.authFull` → `example.app`: the domain that publishes the NSID's lexicons. */
export const lexiconAuthority = (nsid: string): string => nsid.split('.').slice(0, -1).reverse().join('.')

/** The DID named by `_lexicon.<authority>`: exactly one `did=` record. */
const authorityDid = async (ctx: OAuthContext, nsid: string): Promise<string> => {
  const name = `_lexicon.${lexiconAuthority(nsid)}`
  let records: string[]
  try {
    records = await dnsQuery(ctx.config, name, 16)
  } catch (err) {
    throw new PermissionSetError(`${(err as Error).message}`)
  }
  const dids = txtDids(records)
  if (dids.length !== 1) throw new PermissionSetError(`${name} must hold exactly one "did=" TXT record (found ${dids.length})`)
  if (!/^did:(plc|web):[a-zA-Z0-9._:%-]+$/.test(dids[0])) throw new PermissionSetError(`${name} names an invalid DID`)
  return dids[0]
}

const isPermissionSet = (value: unknown): value is LexiconPermissionSet =>
  !!value && typeof value === 'object' && (value as { type?: unknown }).type === 'permission-set' && Array.isArray((value as { permissions?: unknown }).permissions)

/** Resolves and verifies the permission set `nsid` from the network. */
const fetchPermissionSet = async (ctx: OAuthContext, nsid: string): Promise<LexiconPermissionSet> => {
  const did = await authorityDid(ctx, nsid)
  let pds: string | null
  let key: string | null
  try {
    const doc = await resolveDid(ctx.config, ctx.cache, did)
    pds = serviceEndpoint(doc, 'atproto_pds')
    key = atprotoSigningKey(doc)
  } catch (err) {
    if (err instanceof DidResolutionError) throw new PermissionSetError(err.message)
    throw err
  }
  if (!pds || !key) throw new PermissionSetError(`The DID document of ${did} names no PDS or no signing key`)
  const query = new URLSearchParams({ did, collection: SCHEMA_COLLECTION, rkey: nsid })
  let car: Uint8Array
  try {
    ;({ body: car } = await safeFetch(ctx.config, `${pds}/xrpc/com.atproto.sync.getRecord?${query}`, {
      accept: 'application/vnd.ipld.car',
      maxBytes: MAX_CAR_BYTES,
      timeoutMs: FETCH_TIMEOUT_MS,
    }))
  } catch (err) {
    if (err instanceof SafeFetchError) throw new PermissionSetError(`Fetching the lexicon from ${pds} failed: ${err.message}`)
    throw err
  }
  let records: Awaited<ReturnType<typeof verifyRecords>>
  try {
    records = await verifyRecords(car, did, key)
  } catch (err) {
    throw new PermissionSetError(`The lexicon record of ${nsid} does not verify: ${(err as Error).message}`)
  }
  const record = records.find((r) => r.collection === SCHEMA_COLLECTION && r.rkey === nsid)?.record as Record<string, unknown> | undefined
  if (!record) throw new PermissionSetError(`${did} publishes no lexicon ${nsid}`)
  if (record.$type !== SCHEMA_COLLECTION || record.lexicon !== 1 || record.id !== nsid) throw new PermissionSetError(`The record of ${nsid} is not a lexicon document for it`)
  const main = (record.defs as Record<string, unknown> | undefined)?.main
  if (!isPermissionSet(main)) throw new PermissionSetError(`Lexicon ${nsid} is not a permission set`)
  return main
}

/**
 * The permission set `nsid`: from the cache while fresh, else from the
 * network, else a stale copy younger than 90 days. Throws
 * `PermissionSetError` when none of these exists.
 */
export const resolvePermissionSet = async (ctx: OAuthContext, nsid: string): Promise<LexiconPermissionSet> => {
  const key = `lexicon-permission-set:v1:${nsid}`
  const cached = await ctx.cache.getJson<CachedSet>(key)
  if (cached && ctx.now - cached.fetchedAt < STALE_AFTER_MS) return cached.set
  try {
    const set = await fetchPermissionSet(ctx, nsid)
    await ctx.cache.put(key, { set, fetchedAt: ctx.now } satisfies CachedSet, EXPIRE_AFTER_MS / 1000)
    return set
  } catch (err) {
    if (cached && ctx.now - cached.fetchedAt < EXPIRE_AFTER_MS) return cached.set
    if (err instanceof PermissionSetError) throw new PermissionSetError(`Permission set ${nsid} could not be resolved: ${err.message}`)
    throw err
  }
}
