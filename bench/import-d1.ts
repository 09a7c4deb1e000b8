/**
 * What our importRepo asks of D1, seen from outside the Worker:
 *
 * - `replayStaging`: the staging statements for a CAR, built by the Worker's
 *   own code (src/repo/import, src/db/import.ts) in the same batches, so the
 *   report can set statement sizes and counts against D1's limits (100 KB per
 *   statement, queries per invocation) without instrumenting the Worker;
 * - `watchImport`: polls wrangler's local D1 file (SQLite in WAL mode, so a
 *   reader never blocks the Worker's writes) and notes when each atomic batch
 *   of the import became visible: staged blocks, the walk (import_node rows),
 *   the final batch (repo_root). Those instants split the call into phases.
 */
import { Database } from 'bun:sqlite'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { stageBlocksStatements, type StagedBlock } from '../src/db/import'
import { readCarStream } from '../src/repo/import/car-stream'
import { classifyBlock } from '../src/repo/import/classify'

/** import-repo.ts's STAGE_BATCH_BYTES (not exported): staged blocks are flushed once this many bytes are buffered. */
const STAGE_BATCH_BYTES = 1_000_000

export interface StagingReplay {
  blocks: number
  /** D1 batches (round trips) that stage the blocks. */
  batches: number
  /** INSERT statements over all those batches. */
  statements: number
  maxStatementsPerBatch: number
  /** Largest statement, in UTF-8 bytes (D1 allows 100,000). */
  maxStatementBytes: number
  sqlBytes: number
  /** Most parameters any staging statement binds (D1 allows 100). */
  maxParams: number
}

export const replayStaging = async (car: Uint8Array): Promise<StagingReplay> => {
  const { blocks } = await readCarStream(new Blob([car]).stream())
  const out: StagingReplay = { blocks: 0, batches: 0, statements: 0, maxStatementsPerBatch: 0, maxStatementBytes: 0, sqlBytes: 0, maxParams: 0 }
  const utf8 = new TextEncoder()
  let pending: StagedBlock[] = []
  let pendingBytes = 0
  const flush = (): void => {
    if (pending.length === 0) return
    const statements = stageBlocksStatements('00000000-0000-4000-8000-000000000000', pending)
    out.batches++
    out.statements += statements.length
    out.maxStatementsPerBatch = Math.max(out.maxStatementsPerBatch, statements.length)
    for (const s of statements) {
      const bytes = utf8.encode(s.sql).byteLength
      out.maxStatementBytes = Math.max(out.maxStatementBytes, bytes)
      out.sqlBytes += bytes
      out.maxParams = Math.max(out.maxParams, s.params?.length ?? 0)
    }
    pending = []
    pendingBytes = 0
  }
  for await (const block of blocks) {
    pending.push({ cid: block.cid, content: block.bytes, ...classifyBlock(block) })
    pendingBytes += block.bytes.byteLength
    out.blocks++
    if (pendingBytes >= STAGE_BATCH_BYTES) flush()
  }
  flush()
  return out
}

/** Instants (ms since the watch began) at which each batch of the import was seen committed. */
export interface ImportTimeline {
  /** First staged blocks visible. */
  firstStaged: number
  /** The staged row count reached its final value. */
  lastStaged: number
  /** Distinct staged counts seen (a lower bound of the staging batches: polls can merge two). */
  stagedSteps: number
  /** The walk batch (import_node, import_record) committed. */
  walked: number
  /** The final batch (repo_root set) committed. */
  finished: number
  polls: number
}

/** The Worker's D1 database in a wrangler persist dir (the one that is not miniflare's metadata). */
const d1File = (persistDir: string): string => {
  const dir = join(persistDir, 'v3/d1/miniflare-D1DatabaseObject')
  const file = readdirSync(dir).find((f) => f.endsWith('.sqlite') && f !== 'metadata.sqlite')
  if (!file) throw new Error(`no D1 database in ${dir}`)
  return join(dir, file)
}

/** Polls every `everyMs` until stopped; NaN for a phase never seen (e.g. the import failed before it). */
export const watchImport = (persistDir: string, everyMs = 25): { stop(): ImportTimeline } => {
  const db = new Database(d1File(persistDir), { readonly: true })
  const query = db.query<{ staged: number; walked: number; root: string | null }, []>(
    `SELECT (SELECT coalesce(max(rowid), 0) FROM import_block) AS staged,
       EXISTS (SELECT 1 FROM import_node) AS walked,
       (SELECT cid FROM repo_root LIMIT 1) AS root`,
  )
  const t0 = performance.now()
  const rootBefore = query.get()?.root ?? null
  const tl: ImportTimeline = { firstStaged: Number.NaN, lastStaged: Number.NaN, stagedSteps: 0, walked: Number.NaN, finished: Number.NaN, polls: 0 }
  let staged = 0
  const poll = (): void => {
    let row: { staged: number; walked: number; root: string | null } | null
    try {
      row = query.get()
    } catch {
      return // busy during a checkpoint: the next poll sees it
    }
    if (!row) return
    tl.polls++
    const t = performance.now() - t0
    if (row.staged > staged) {
      if (Number.isNaN(tl.firstStaged)) tl.firstStaged = t
      tl.lastStaged = t
      tl.stagedSteps++
      staged = row.staged
    }
    if (row.walked && Number.isNaN(tl.walked)) tl.walked = t
    if (row.root !== rootBefore && row.root !== null && Number.isNaN(tl.finished)) tl.finished = t
  }
  const timer = setInterval(poll, everyMs)
  return {
    stop: () => {
      clearInterval(timer)
      poll()
      db.close()
      return tl
    },
  }
}
