/**
 * Read-only block storage for `@atproto/repo` over D1, with an isolate-wide
 * cache. Blocks are immutable by CID, so caching them is always safe; only
 * the root is read fresh for every write (src/repo/commit.ts). Writes never
 * go through here: the commit is applied as one D1 batch by `runCommit`.
 */
import { BlockMap, ReadableBlockstore, type CommitData, type RepoStorage } from '@atproto/repo'
import type { Cid } from '@atproto/lex-data'
import type { Db } from '../db/client'
import { getBlockBytes } from '../db/repo'

/** A bounded LRU of block bytes, shared by all requests of this isolate. */
export class BlockCache {
  private map = new Map<string, Uint8Array>()
  private bytes = 0
  constructor(private readonly maxBytes: number) {}

  get(cid: string): Uint8Array | undefined {
    const value = this.map.get(cid)
    if (value) {
      // Refresh recency.
      this.map.delete(cid)
      this.map.set(cid, value)
    }
    return value
  }

  /** Keeps blocks this isolate just committed, so the next write starts warm. */
  remember(blocks: BlockMap): void {
    for (const [cid, bytes] of blockEntries(blocks)) this.set(cid, bytes)
  }

  set(cid: string, value: Uint8Array): void {
    if (this.map.has(cid) || value.byteLength > this.maxBytes / 16) return
    this.map.set(cid, value)
    this.bytes += value.byteLength
    while (this.bytes > this.maxBytes) {
      const oldest = this.map.keys().next().value as string
      this.bytes -= this.map.get(oldest)!.byteLength
      this.map.delete(oldest)
    }
  }
}

/**
 * A BlockMap's entries with their CIDs as the strings it keys them by:
 * iterating it parses every key back into a CID, which a caller that wants
 * the string then formats again (a measurable share of a write's CPU).
 */
export const blockEntries = (blocks: BlockMap): Iterable<[string, Uint8Array]> => {
  const inner = (blocks as unknown as { map?: unknown }).map
  if (inner instanceof Map) return inner as Map<string, Uint8Array>
  return [...blocks].map(([cid, bytes]): [string, Uint8Array] => [cid.toString(), bytes])
}

/** 32 MiB: the MST of a large repo, well inside the 128 MB isolate limit. */
export const blockCache = new BlockCache(32 * 1024 * 1024)

export class D1Blockstore extends ReadableBlockstore implements RepoStorage {
  /** Blocks read through this store (src/repo/head.ts bounds how long a tree is kept by it). */
  loads = 0

  constructor(
    private db: Db,
    private readonly cache: BlockCache = blockCache,
  ) {
    super()
  }

  /** A tree kept between writes (src/repo/head.ts) loads its nodes with the current request's client. */
  useDb(db: Db): void {
    this.db = db
  }

  async getBytes(cid: Cid): Promise<Uint8Array | null> {
    this.loads++
    const key = cid.toString()
    const cached = this.cache.get(key)
    if (cached) return cached
    const found = await getBlockBytes(this.db, [key])
    const bytes = found.get(key) ?? null
    if (bytes) this.cache.set(key, bytes)
    return bytes
  }

  async has(cid: Cid): Promise<boolean> {
    return (await this.getBytes(cid)) !== null
  }

  async getBlocks(cids: Cid[]): Promise<{ blocks: BlockMap; missing: Cid[] }> {
    const blocks = new BlockMap()
    const toFetch: Cid[] = []
    for (const cid of cids) {
      const cached = this.cache.get(cid.toString())
      if (cached) blocks.set(cid, cached)
      else toFetch.push(cid)
    }
    const missing: Cid[] = []
    if (toFetch.length > 0) {
      const found = await getBlockBytes(
        this.db,
        toFetch.map((c) => c.toString()),
      )
      for (const cid of toFetch) {
        const bytes = found.get(cid.toString())
        if (bytes) {
          this.cache.set(cid.toString(), bytes)
          blocks.set(cid, bytes)
        } else {
          missing.push(cid)
        }
      }
    }
    return { blocks, missing }
  }

  // The RepoStorage write half is deliberately unusable: the one write path
  // is runCommit() (src/repo/commit.ts), which applies a commit as a single D1 batch.
  getRoot(): Promise<Cid | null> {
    return Promise.reject(new Error('read the root through src/db/repo.ts'))
  }
  putBlock(): Promise<void> {
    return Promise.reject(new Error('writes go through runCommit()'))
  }
  putMany(): Promise<void> {
    return Promise.reject(new Error('writes go through runCommit()'))
  }
  updateRoot(): Promise<void> {
    return Promise.reject(new Error('writes go through runCommit()'))
  }
  applyCommit(_commit: CommitData): Promise<void> {
    return Promise.reject(new Error('writes go through runCommit()'))
  }
}


