/**
 * DNS for a Worker, which has no resolver: questions go to a DNS-over-HTTPS
 * JSON endpoint (`DNS_OVER_HTTPS_URL`, Cloudflare's by default; in local
 * development the loopback stand-in of `PDS_DEV_LOOPBACK_ORIGIN` when no
 * endpoint is set, see src/env.ts). Used for handles (`_atproto.<handle>`),
 * permission-set authorities (`_lexicon.<domain>`) and the public-address
 * check before fetching a client's URL.
 */
import type { Config } from '../env'

export class DnsLookupError extends Error {
  override name = 'DnsLookupError'
}

const DNS_TIMEOUT_MS = 3000

export type DnsRecordType = 1 | 16 | 28

interface DohAnswer {
  type?: number
  data?: string
}

/**
 * The records of `type` for `name` (1 = A, 28 = AAAA, 16 = TXT): empty when
 * the name has none (NXDOMAIN included); DnsLookupError when the resolver
 * cannot be asked or answers nonsense.
 */
export const dnsQuery = async (cfg: Config, name: string, type: DnsRecordType): Promise<string[]> => {
  const url = `${cfg.dohUrl}?name=${encodeURIComponent(name)}&type=${type}`
  let res: Response
  try {
    res = await fetch(url, { headers: { accept: 'application/dns-json' }, signal: AbortSignal.timeout(DNS_TIMEOUT_MS) })
  } catch {
    throw new DnsLookupError(`DNS lookup of ${name} failed`)
  }
  if (!res.ok) {
    await res.body?.cancel()
    throw new DnsLookupError(`DNS lookup of ${name} failed (HTTP ${res.status})`)
  }
  const body = (await res.json().catch(() => null)) as { Status?: number; Answer?: DohAnswer[] } | null
  if (!body || typeof body.Status !== 'number') throw new DnsLookupError(`DNS lookup of ${name} failed`)
  return (body.Answer ?? []).filter((a) => a.type === type && typeof a.data === 'string').map((a) => a.data as string)
}

/**
 * The `did=` values of TXT records (`_atproto.`, `_lexicon.`). A record's
 * strings arrive quoted (`"a" "b"`); joined, they are the record. Callers
 * accept exactly one: several are ambiguous, as the reference resolver has it.
 */
export const txtDids = (records: string[]): string[] =>
  records
    .map((r) => r.replace(/^"|"$/g, '').replace(/"\s*"/g, ''))
    .filter((v) => v.startsWith('did='))
    .map((v) => v.slice(4))
