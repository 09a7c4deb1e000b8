/**
 * The KV namespace used as a cache: values that may be a little stale or
 * missing without harm (DID documents, relay-crawl bookkeeping). KV is
 * eventually consistent, so nothing that must hold on the next request lives
 * here (tokens, codes, account status live in D1). A failing KV read or
 * write is a cache miss, never an error the client sees.
 */
export class KvCache {
  constructor(private readonly kv: KVNamespace) {}

  async getText(key: string): Promise<string | null> {
    return this.kv.get(key).catch(() => null)
  }

  async getJson<T>(key: string): Promise<T | null> {
    return this.kv.get<T>(key, 'json').catch(() => null)
  }

  /** Stores `value` (a string, or JSON for anything else) for `ttlSeconds` (KV's minimum is 60). */
  async put(key: string, value: unknown, ttlSeconds: number): Promise<void> {
    const text = typeof value === 'string' ? value : JSON.stringify(value)
    await this.kv.put(key, text, { expirationTtl: Math.max(60, ttlSeconds) }).catch(() => undefined)
  }
}
