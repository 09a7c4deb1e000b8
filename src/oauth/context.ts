/**
 * What the authorization server's domain code works with: typed config, D1,
 * the KV cache, the nonce source, and one clock reading per request (every
 * expiry of one request is computed from the same `now`).
 */
import type { KvCache } from '../cache/kv-cache'
import type { Db } from '../db/client'
import type { Config } from '../env'
import { oauthKeys } from './keys'
import { DpopNonces } from './nonces'

export interface OAuthContext {
  config: Config
  db: Db
  cache: KvCache
  nonces: DpopNonces
  /** Milliseconds since the epoch, read once per request. */
  now: number
}

const nonceSources = new WeakMap<Config, DpopNonces>()

/** The nonce source of this config (one per isolate, so its small cache is shared). */
export const dpopNonces = async (config: Config): Promise<DpopNonces> => {
  let nonces = nonceSources.get(config)
  if (!nonces) {
    nonces = new DpopNonces((await oauthKeys(config)).dpopNonce)
    nonceSources.set(config, nonces)
  }
  return nonces
}

export const oauthContext = async (deps: { config: Config; db: Db; cache: KvCache }): Promise<OAuthContext> => ({
  config: deps.config,
  db: deps.db,
  cache: deps.cache,
  nonces: await dpopNonces(deps.config),
  now: Date.now(),
})

export const iso = (ms: number): string => new Date(ms).toISOString()
