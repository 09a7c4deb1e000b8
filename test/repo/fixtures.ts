/**
 * Shared fixtures for the in-runtime tests of src/repo, src/db and
 * src/firehose: a wiped database (each test file gets its own D1, but tests
 * in one file share it, and the PDS holds exactly one repo), a RepoContext
 * signed with the test key, row counts, and checks of the stored repo
 * (verifies as a CAR export; live blocks are exactly the reachable ones).
 */
import { env } from 'cloudflare:workers'
import { parseCid } from '@atproto/lex-data'
import { Repo, verifyRepoCar, type VerifiedRepo } from '@atproto/repo'
import { openDb, type Db } from '../../src/db/client'
import { getRoot, type RootRow } from '../../src/db/repo'
import { loadConfig, type Config, type WorkerEnv } from '../../src/env'
import { createGenesis, type RepoContext } from '../../src/repo/commit'
import { prepareCreate, type PreparedCreate } from '../../src/repo/prepare'
import { streamRepoCar } from '../../src/repo/reader'
import { D1Blockstore } from '../../src/repo/storage'

export const workerEnv = env as WorkerEnv

/** Every table the migrations create (d1_migrations aside). */
export const TABLES = [
  'block',
  'record',
  'backlink',
  'commit_chain',
  'repo_root',
  'repo_seq',
  'repo_seq_chunk',
  'pds_state',
  'refresh_token',
  'account',
  'import_block',
  'import_node',
  'import_record',
] as const
export type Table = (typeof TABLES)[number]

/** Empties every table, so a test starts with no repo. */
export const wipeDatabase = async (): Promise<void> => {
  await workerEnv.DB.batch(TABLES.map((t) => workerEnv.DB.prepare(`DELETE FROM ${t}`)))
}

export const testConfig = (): Promise<Config> => loadConfig(workerEnv)

/**
 * A repo context signed with the test key. Its repo gets its genesis commit
 * first (as a deployment's first start does; `genesis: false` leaves the
 * database as it is), made without `onCommit`, so callbacks count only the
 * test's own commits.
 */
export const newRepoContext = async (opts: { db?: Db; onCommit?: RepoContext['onCommit']; genesis?: boolean } = {}): Promise<RepoContext> => {
  const config = await testConfig()
  const ctx: RepoContext = {
    db: opts.db ?? openDb(workerEnv.DB),
    did: config.did,
    handle: config.handle,
    signingKey: config.signingKey,
  }
  if (opts.genesis !== false) await createGenesis(ctx)
  return { ...ctx, onCommit: opts.onCommit }
}

/** Makes sure the repo has its genesis commit; returns the current root. */
export const ensureGenesis = async (ctx: RepoContext): Promise<RootRow> => {
  await createGenesis(ctx)
  const root = await getRoot(ctx.db)
  if (!root) throw new Error('no root after genesis')
  return root
}

export const rowCounts = async (): Promise<Record<Table, number>> => {
  const results = await workerEnv.DB.batch<{ n: number }>(TABLES.map((t) => workerEnv.DB.prepare(`SELECT count(*) AS n FROM ${t}`)))
  return Object.fromEntries(TABLES.map((t, i) => [t, results[i].results[0].n])) as Record<Table, number>
}

/** A record of a collection no lexicon knows, cheap to prepare in bulk. */
export const THING = 'com.example.thing'

export const prepareThing = (did: string, value: unknown, rkey?: string): Promise<PreparedCreate> =>
  prepareCreate({ did, collection: THING, rkey, record: { value } })

export interface ChainRow {
  cid: string
  rev: string
  prev: string
}

/** The commit_chain rows, in insertion order. */
export const commitChainRows = async (): Promise<ChainRow[]> =>
  (await workerEnv.DB.prepare('SELECT cid, rev, prev FROM commit_chain ORDER BY rowid').all<ChainRow>()).results

/**
 * Follows prev links from the root back to genesis; returns the path (newest
 * first). Throws unless every chain row lies on that one path and revs
 * strictly increase along it.
 */
export const linearChain = async (): Promise<ChainRow[]> => {
  const rows = await commitChainRows()
  const root = await getRoot(openDb(workerEnv.DB))
  if (!root) throw new Error('no root')
  const byCid = new Map(rows.map((r) => [r.cid, r]))
  const path: ChainRow[] = []
  let cursor = byCid.get(root.cid)
  while (cursor) {
    path.push(cursor)
    if (cursor.prev === '') break
    const parent = byCid.get(cursor.prev)
    if (!parent) throw new Error(`chain broken at ${cursor.cid}: no parent ${cursor.prev}`)
    if (!(parent.rev < cursor.rev)) throw new Error(`rev does not increase: ${parent.rev} -> ${cursor.rev}`)
    cursor = parent
  }
  if (path.length !== rows.length) throw new Error(`${rows.length} chain rows but a path of ${path.length}`)
  return path
}

export const collectBytes = async (stream: ReadableStream<Uint8Array>): Promise<Uint8Array> =>
  new Uint8Array(await new Response(stream).arrayBuffer())

/** Exports the repo at `root` (default: the current root) with getRepo's streamer and verifies it. */
export const verifyStoredRepo = async (ctx: RepoContext, root?: RootRow): Promise<VerifiedRepo> => {
  const at = root ?? (await getRoot(ctx.db))
  if (!at) throw new Error('no root')
  const car = await collectBytes(streamRepoCar(ctx.db, at))
  return verifyRepoCar(car, ctx.did, ctx.signingKey.did())
}

/** The repo's records as "collection/rkey" → CID string, from a verified export. */
export const recordsOf = (verified: VerifiedRepo): Map<string, string> =>
  new Map(verified.creates.map((c) => [`${c.collection}/${c.rkey}`, c.cid.toString()]))

/**
 * CIDs of unremoved blocks vs. blocks reachable from the current root (commit,
 * MST nodes, records): they must be the same set, or blocks leak or vanish.
 */
export const liveAndReachableBlocks = async (db: Db): Promise<{ live: string[]; reachable: string[] }> => {
  const root = await getRoot(db)
  if (!root) throw new Error('no root')
  const repo = await Repo.load(new D1Blockstore(db), parseCid(root.cid))
  const reachable = (await repo.data.allCids()).toList().map((c) => c.toString())
  reachable.push(root.cid)
  const live = (await workerEnv.DB.prepare('SELECT cid FROM block WHERE removed_rev IS NULL').all<{ cid: string }>()).results.map((r) => r.cid)
  return { live: live.sort(), reachable: reachable.sort() }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
