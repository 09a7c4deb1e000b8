/**
 * What the status page and `npm run status` show, gathered as plain data.
 *
 * Only public facts: the identity (hostname, handle, DID), the repo's size and
 * head, the firehose position, the relays asked to crawl and the last cron
 * run. Never the email, keys, tokens or client addresses: anyone can load `/`.
 */
import type { Db } from '../db/client'
import { countRepoSize, getStatusFacts, saveRepoSize, STATE_MAINTENANCE, STATE_REPO_SIZE, STATE_RELAY_CRAWL, type RepoSize } from '../db/status'
import type { AccountRow } from '../db/account-row'
import type { Config } from '../env'
import { VERSION } from '../version'

export interface CrawlRequestReport {
  at: string
  /** `cron`: the hourly re-announce; `write`: after a write with no relay listening. */
  trigger: 'cron' | 'write'
  results?: { relay: string; ok: boolean; status?: number }[]
}

export interface MaintenanceReport {
  at: string
  removedBlocks: number
  deletedBlobs: number
  prunedEvents: number
  expiredTokens: number
  /** Expired OAuth rows (requests, sessions, used refresh tokens, one-time values, browsers); absent in reports from before OAuth. */
  expiredOAuth?: number
  crawl: 'requested' | 'relay connected' | 'recently requested' | 'no relays' | 'failed'
}

export interface StatusReport {
  service: 'edge-pds'
  version: string
  hostname: string
  serviceUrl: string
  handle: string
  did: string
  /** The hosting status; `deactivated` with no repo while a deployment waits for its account to be migrated in. */
  account: { active: boolean; status: 'active' | 'deactivated' | 'takendown' | 'suspended' }
  repo: { rev: string; head: string; lastCommitAt: string; records: number; blocks: number; bytes: number } | null
  firehose: { subscribers: number | null; lastSeq: number | null; lastEventAt: string | null }
  relays: { hosts: string[]; lastCrawlRequest: CrawlRequestReport | null }
  maintenance: MaintenanceReport | null
  generatedAt: string
}

export interface StatusSources {
  db: Db
  config: Config
  /** The account row (status, current handle). */
  account: () => Promise<AccountRow>
  /** Connected firehose subscribers (the hub's stats RPC); null when it cannot be asked. */
  subscribers: () => Promise<number | null>
  /** Time of the last requestCrawl made after a write, if remembered (KV, kept an hour). */
  lastWriteCrawl: () => Promise<string | null>
  /** Schedules the memo write after the response. */
  waitUntil: (p: Promise<unknown>) => void
}

const parse = <T>(json: string | undefined): T | null => {
  if (!json) return null
  try {
    return JSON.parse(json) as T
  } catch {
    return null
  }
}

/** Reads the status: one D1 round trip, plus one recount after the repo changed. */
export const gatherStatus = async (src: StatusSources): Promise<StatusReport> => {
  const now = new Date().toISOString()
  const [facts, account, subscribers, writeCrawlAt] = await Promise.all([
    getStatusFacts(src.db),
    src.account(),
    src.subscribers().catch(() => null),
    src.lastWriteCrawl().catch(() => null),
  ])
  let size = parse<RepoSize>(facts.state[STATE_REPO_SIZE])
  if (facts.root && size?.rev !== facts.root.rev) {
    size = await countRepoSize(src.db)
    if (size) {
      const fresh = size
      src.waitUntil(saveRepoSize(src.db, fresh, now).catch(() => undefined))
    }
  }
  const cronCrawl = parse<CrawlRequestReport>(facts.state[STATE_RELAY_CRAWL])
  // The newer of the two ways a crawl gets requested.
  const lastCrawlRequest =
    writeCrawlAt && (!cronCrawl || writeCrawlAt > cronCrawl.at) ? { at: writeCrawlAt, trigger: 'write' as const } : cronCrawl
  const root = facts.root
  return {
    service: 'edge-pds',
    version: VERSION,
    hostname: src.config.hostname,
    serviceUrl: src.config.serviceUrl,
    handle: account.handle,
    did: src.config.did,
    account: { active: account.status === 'active', status: account.status },
    repo:
      root && size
        ? { rev: root.rev, head: root.cid, lastCommitAt: root.indexedAt, records: size.records, blocks: size.blocks, bytes: size.bytes }
        : null,
    firehose: { subscribers, lastSeq: facts.lastEvent?.seq ?? null, lastEventAt: facts.lastEvent?.time ?? null },
    relays: { hosts: src.config.relayHosts, lastCrawlRequest },
    maintenance: parse<MaintenanceReport>(facts.state[STATE_MAINTENANCE]),
    generatedAt: now,
  }
}
