/**
 * The Worker's environment, validated and typed once.
 *
 * `Env` comes from `wrangler types` (bindings and [vars]); the secrets are
 * declared here because `wrangler types` only sees them when `.dev.vars`
 * exists. `loadConfig` turns the raw strings into typed config and fails with
 * an error naming the variable, so a broken deploy answers every request with
 * a clear 500 message in the logs instead of running with an insecure default.
 */
import { Secp256k1Keypair } from '@atproto/crypto'
import { isValidHandle } from '@atproto/syntax'
import { parsePasswordSetting, type PasswordSetting } from './password-setting'

export interface Secrets {
  PDS_PASSWORD?: string
  JWT_SECRET?: string
  PDS_SIGNING_KEY?: string
  /**
   * 64 hex characters: the secp256k1 key this PDS signs PLC operations with
   * (signPlcOperation, updateHandle of a did:plc). Optional: without it the
   * signing key serves, as in deployments made before it existed.
   */
  PDS_PLC_ROTATION_KEY?: string
  /** Optional overrides, mostly for local dev and tests. */
  PDS_SERVICE_URL?: string
  PDS_EMAIL?: string
  PDS_BLOB_UPLOAD_LIMIT?: string
  /** Seconds an unreferenced upload is kept before the cron collects it (default 6 h). */
  PDS_BLOB_TEMP_TTL_SECONDS?: string
  /** Forwarding targets and the PLC directory (defaults: Bluesky's services). */
  BSKY_APPVIEW_URL?: string
  BSKY_APPVIEW_DID?: string
  MOD_SERVICE_URL?: string
  MOD_SERVICE_DID?: string
  PLC_URL?: string
  /** DNS-over-HTTPS endpoint for handle (and lexicon) TXT lookups (default Cloudflare's). */
  DNS_OVER_HTTPS_URL?: string
  /** "true" when the owner's email (PDS_EMAIL) is known to be confirmed. */
  PDS_EMAIL_CONFIRMED?: string
  /** Sender address of confirmation codes (needs the EMAIL send_email binding). */
  PDS_EMAIL_FROM?: string
  /** Optional `[[send_email]]` binding: without it the email methods answer 400. */
  EMAIL?: SendEmail
  /**
   * Development and tests only: an http loopback origin that stands in for the
   * internet for the OAuth server's outbound fetches (see `devLoopbackOrigin`).
   */
  PDS_DEV_LOOPBACK_ORIGIN?: string
}

export type WorkerEnv = Env & Secrets

export interface Config {
  /** Host name (with :port in local dev) the PDS is served on. */
  hostname: string
  /** Base URL clients and relays reach us at, e.g. https://pds.example.com */
  serviceUrl: string
  /** The account's DID: did:web:<hostname> or did:plc:... */
  did: string
  /** DID of the service itself (the `aud` of our session tokens). */
  serviceDid: string
  handle: string
  email: string | null
  /** Reported by getSession; clients nag the owner to confirm an unconfirmed email. */
  emailConfirmed: boolean
  /** From address of the codes the email methods send (PDS_EMAIL_FROM), or null. */
  emailFrom: string | null
  password: PasswordSetting
  jwtSecret: Uint8Array
  signingKey: Secp256k1Keypair
  /** Signs PLC operations for the account (PDS_PLC_ROTATION_KEY, else the signing key). */
  plcRotationKey: Secp256k1Keypair
  /** Relays asked to crawl us (RELAY_HOSTS, comma separated; empty disables). */
  relayHosts: string[]
  /** Largest blob upload accepted, in bytes (PDS_BLOB_UPLOAD_LIMIT; video needs 100 MB). */
  blobUploadLimit: number
  /** Where `app.bsky.*` calls go without an `atproto-proxy` header; null disables (BSKY_APPVIEW_URL = ""). */
  appView: ServiceConfig | null
  /** Where `com.atproto.moderation.createReport` goes without an `atproto-proxy` header. */
  modService: ServiceConfig | null
  /** PLC directory used to resolve did:plc documents (PLC_URL). */
  plcUrl: string
  /** DNS-over-HTTPS JSON endpoint for TXT lookups (DNS_OVER_HTTPS_URL): Workers have no resolver. */
  dohUrl: string
  /**
   * PDS_DEV_LOOPBACK_ORIGIN, for local development and tests only (refused
   * unless the PDS itself runs on localhost): the OAuth server's outbound
   * fetches (client metadata, jwks_uri, permission-set lexicons) and their
   * DNS-over-HTTPS lookups go to this http loopback origin instead of the
   * internet, after the same checks production applies. Null in production.
   */
  devLoopbackOrigin: string | null
}

/** A service we forward requests to: its base URL and the DID its tokens are addressed to. */
export interface ServiceConfig {
  url: string
  did: string
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

let cached: { source: WorkerEnv; config: Promise<Config> } | null = null

/** Validated config for this env; computed once per isolate. */
export const loadConfig = (env: WorkerEnv): Promise<Config> => {
  if (cached?.source === env) return cached.config
  const config = buildConfig(env)
  cached = { source: env, config }
  // A rejected config is not cached, so fixing a secret needs no redeploy.
  config.catch(() => {
    if (cached?.config === config) cached = null
  })
  return config
}

const required = (env: WorkerEnv, name: keyof WorkerEnv & string): string => {
  const value = env[name]
  if (typeof value !== 'string' || value.trim() === '') {
    throw new ConfigError(`Missing required setting ${name} (see README: Configuration)`)
  }
  return value.trim()
}

const DEFAULT_BLOB_UPLOAD_LIMIT = 100 * 1024 * 1024

const parseBlobLimit = (value: string | undefined): number => {
  if (value === undefined || value.trim() === '') return DEFAULT_BLOB_UPLOAD_LIMIT
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n <= 0) throw new ConfigError(`PDS_BLOB_UPLOAD_LIMIT must be a positive number of bytes, got "${value}"`)
  return n
}

const DEFAULT_APPVIEW: ServiceConfig = { url: 'https://api.bsky.app', did: 'did:web:api.bsky.app' }
const DEFAULT_MOD_SERVICE: ServiceConfig = { url: 'https://mod.bsky.app', did: 'did:plc:ar7c4by46qjdydhdevvrndac' }

const parseUrl = (name: string, value: string): string => {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new ConfigError(`${name} must be an http(s) URL, got "${value}"`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError(`${name} must be an http(s) URL, got "${value}"`)
  return url.href.replace(/\/+$/, '')
}

/**
 * A forwarding target from a URL and a DID setting. Unset means the default
 * (Bluesky's service); an empty URL switches forwarding off.
 */
const parseService = (env: WorkerEnv, urlName: keyof WorkerEnv & string, didName: keyof WorkerEnv & string, fallback: ServiceConfig): ServiceConfig | null => {
  const rawUrl = env[urlName] as string | undefined
  const rawDid = env[didName] as string | undefined
  if (rawUrl === undefined && rawDid === undefined) return fallback
  if (rawUrl !== undefined && rawUrl.trim() === '') return null
  const url = rawUrl === undefined ? fallback.url : parseUrl(urlName, rawUrl.trim())
  const did = rawDid?.trim() || (rawUrl === undefined ? fallback.did : '')
  if (!/^did:[a-z]+:[a-zA-Z0-9._:%-]+$/.test(did)) throw new ConfigError(`${didName} must be the DID of the service at ${urlName}, got "${did}"`)
  return { url, did }
}

/** A secp256k1 private key setting (64 hex characters). */
const parseKey = async (name: string, hex: string): Promise<Secp256k1Keypair> => {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new ConfigError(`${name} must be a 64-character hex secp256k1 private key`)
  try {
    return await Secp256k1Keypair.import(hex)
  } catch {
    throw new ConfigError(`${name} is not a valid secp256k1 private key`)
  }
}

/** The dev-only loopback origin: an http://localhost or 127.0.0.1 origin, and only for a PDS on localhost. */
const parseDevLoopbackOrigin = (value: string | undefined, pdsIsLocal: boolean): string | null => {
  if (value === undefined || value.trim() === '') return null
  if (!pdsIsLocal) throw new ConfigError('PDS_DEV_LOOPBACK_ORIGIN is for local development only (PDS_HOSTNAME must be localhost or 127.0.0.1)')
  const url = (() => {
    try {
      return new URL(value.trim())
    } catch {
      return null
    }
  })()
  if (!url || url.protocol !== 'http:' || !/^(localhost|127\.0\.0\.1)$/.test(url.hostname) || url.pathname !== '/' || url.search) {
    throw new ConfigError(`PDS_DEV_LOOPBACK_ORIGIN must be an http://127.0.0.1:<port> origin, got "${value}"`)
  }
  return url.origin
}

const DEFAULT_DOH_URL = 'https://cloudflare-dns.com/dns-query'

const buildConfig = async (env: WorkerEnv): Promise<Config> => {
  const hostname = required(env, 'PDS_HOSTNAME').toLowerCase()
  if (!/^[a-z0-9.-]+(:\d{1,5})?$/.test(hostname)) {
    throw new ConfigError(`PDS_HOSTNAME must be a host name (optionally :port), got "${hostname}"`)
  }
  const isLocal = /^(localhost|127\.0\.0\.1)(:\d+)?$/.test(hostname)
  const serviceUrl = (env.PDS_SERVICE_URL?.trim() || `${isLocal ? 'http' : 'https'}://${hostname}`).replace(/\/+$/, '')

  const did = required(env, 'PDS_DID')
  if (!/^did:(web|plc):[a-zA-Z0-9._:%-]+$/.test(did)) {
    throw new ConfigError(`PDS_DID must be did:web:<host> or did:plc:<id>, got "${did}"`)
  }
  const handle = required(env, 'PDS_HANDLE').toLowerCase()
  if (!isValidHandle(handle)) {
    throw new ConfigError(`PDS_HANDLE is not a valid handle: "${handle}"`)
  }

  let password: PasswordSetting
  try {
    password = await parsePasswordSetting(required(env, 'PDS_PASSWORD'))
  } catch (err) {
    throw err instanceof ConfigError ? err : new ConfigError((err as Error).message)
  }

  const jwtSecret = required(env, 'JWT_SECRET')
  if (jwtSecret.length < 32) {
    throw new ConfigError('JWT_SECRET must be at least 32 characters (generate one with: openssl rand -hex 32)')
  }

  const signingKey = await parseKey('PDS_SIGNING_KEY', required(env, 'PDS_SIGNING_KEY'))
  const rotationHex = env.PDS_PLC_ROTATION_KEY?.trim()
  const plcRotationKey = rotationHex ? await parseKey('PDS_PLC_ROTATION_KEY', rotationHex) : signingKey

  const devLoopbackOrigin = parseDevLoopbackOrigin(env.PDS_DEV_LOOPBACK_ORIGIN, isLocal)

  return {
    hostname,
    serviceUrl,
    did,
    serviceDid: `did:web:${hostname.replace(':', '%3A')}`,
    handle,
    email: env.PDS_EMAIL?.trim().toLowerCase() || null,
    emailConfirmed: env.PDS_EMAIL_CONFIRMED?.trim().toLowerCase() === 'true',
    emailFrom: env.PDS_EMAIL_FROM?.trim() || null,
    password,
    jwtSecret: new TextEncoder().encode(jwtSecret),
    signingKey,
    plcRotationKey,
    blobUploadLimit: parseBlobLimit(env.PDS_BLOB_UPLOAD_LIMIT),
    appView: parseService(env, 'BSKY_APPVIEW_URL', 'BSKY_APPVIEW_DID', DEFAULT_APPVIEW),
    modService: parseService(env, 'MOD_SERVICE_URL', 'MOD_SERVICE_DID', DEFAULT_MOD_SERVICE),
    plcUrl: parseUrl('PLC_URL', env.PLC_URL?.trim() || 'https://plc.directory'),
    // A local deployment with the loopback stand-in asks it DNS questions too, unless told otherwise.
    dohUrl: parseUrl('DNS_OVER_HTTPS_URL', env.DNS_OVER_HTTPS_URL?.trim() || (devLoopbackOrigin ? `${devLoopbackOrigin}/dns-query` : DEFAULT_DOH_URL)),
    devLoopbackOrigin,
    relayHosts: (env.RELAY_HOSTS ?? '')
      .split(',')
      .map((h) => h.trim())
      .filter(Boolean),
  }
}
