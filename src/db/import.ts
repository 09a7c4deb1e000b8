/**
 * The staging side of com.atproto.repo.importRepo (tables import_block,
 * import_node, import_record; see drizzle/schema.ts). Blocks are staged in a
 * few large statements (values inlined as SQL literals: D1 binds at most 100
 * parameters per statement, and every statement of a Worker invocation
 * counts; a block too large to inline gets a statement of its own with bound
 * parameters), the tree is walked with a recursive query, and one final batch
 * moves the result into the repo atomically. Nothing here holds more than one
 * batch of blocks in memory.
 */
import type { Db, SqlStatement } from './client'
import { d1ErrorText, hexBytes } from './client'
import { isCommitGuardError } from './repo'

export interface StagedBlock {
  cid: string
  content: Uint8Array
  nodeJson: string | null
  recordJson: string | null
}

/** Statements stay well under D1's limit of 100 KB of SQL text (UTF-8 bytes; D1 refuses more with SQLITE_TOOBIG). */
const MAX_STATEMENT_BYTES = 90_000
const utf8 = new TextEncoder()

const quote = (text: string): string => `'${text.replaceAll("'", "''")}'`
const literal = (text: string | null): string => (text === null ? 'NULL' : quote(text))

/** SQL text rows cannot carry a quote-breaking CID or import id: both are checked base32/uuid strings. */
const assertPlain = (value: string): string => {
  if (!/^[a-z0-9-]+$/i.test(value)) throw new Error(`not a plain identifier: ${value}`)
  return value
}

/** INSERT statements for staged blocks, each up to ~90 KB of SQL. */
export const stageBlocksStatements = (importId: string, blocks: StagedBlock[]): SqlStatement[] => {
  const statements: SqlStatement[] = []
  const head = 'INSERT OR IGNORE INTO import_block (import_id, cid, content, node_json, record_json) VALUES '
  let values: string[] = []
  let size = head.length
  const flush = (): void => {
    if (values.length === 0) return
    statements.push({ sql: head + values.join(',') })
    values = []
    size = head.length
  }
  const id = assertPlain(importId)
  for (const b of blocks) {
    const cid = assertPlain(b.cid)
    const node = literal(b.nodeJson)
    const record = literal(b.recordJson)
    // The row's SQL text: hex content, the JSON literals in UTF-8, and 16 bytes of punctuation.
    const rowBytes = id.length + cid.length + 2 * b.content.byteLength + utf8.encode(node).byteLength + utf8.encode(record).byteLength + 16
    if (head.length + rowBytes > MAX_STATEMENT_BYTES) {
      // A block over ~45 KB (records may reach 1 MB) cannot be inlined even alone; bound values have no such limit.
      statements.push({ sql: `${head}(?, ?, ?, ?, ?)`, params: [id, cid, b.content, b.nodeJson, b.recordJson] })
      continue
    }
    if (size + rowBytes > MAX_STATEMENT_BYTES) flush()
    values.push(`('${id}','${cid}',X'${hexBytes(b.content)}',${node},${record})`)
    size += rowBytes
  }
  flush()
  return statements
}

/** Removes every staged row (a new import starts clean; an abandoned one leaves nothing behind). */
export const clearStagingStatements = (): SqlStatement[] => [
  { sql: 'DELETE FROM import_block' },
  { sql: 'DELETE FROM import_node' },
  { sql: 'DELETE FROM import_record' },
]

/**
 * Walks the imported tree from its MST root inside D1, then lists its
 * records (key, CID, blobs, backlinks) from the reachable nodes' leaves.
 * Backlinks are kept only when the record's $type is its collection.
 */
export const walkStatements = (importId: string, dataRoot: string, did: string): SqlStatement[] => [
  {
    sql: `WITH RECURSIVE reach(cid) AS (
        SELECT ?1
        UNION
        SELECT j.value FROM reach r
          JOIN import_block b ON b.import_id = ?2 AND b.cid = r.cid
          JOIN json_each(b.node_json, '$.c') j
      )
      INSERT INTO import_node (import_id, cid) SELECT ?2, cid FROM reach`,
    params: [dataRoot, importId],
  },
  {
    sql: `INSERT INTO import_record (import_id, uri, collection, rkey, cid, blobs_json, backlinks_json)
      SELECT ?1, 'at://' || ?2 || '/' || leaf.key, leaf.collection, substr(leaf.key, length(leaf.collection) + 2), leaf.cid,
        coalesce(json_extract(r.record_json, '$.b'), '[]'),
        CASE WHEN json_extract(r.record_json, '$.t') = leaf.collection THEN coalesce(json_extract(r.record_json, '$.l'), '[]') ELSE '[]' END
      FROM (
        SELECT json_extract(j.value, '$[0]') AS key, json_extract(j.value, '$[1]') AS cid,
          substr(json_extract(j.value, '$[0]'), 1, instr(json_extract(j.value, '$[0]'), '/') - 1) AS collection
        FROM import_node n
          JOIN import_block b ON b.import_id = n.import_id AND b.cid = n.cid
          JOIN json_each(b.node_json, '$.k') j
        WHERE n.import_id = ?1
      ) leaf
      LEFT JOIN import_block r ON r.import_id = ?1 AND r.cid = leaf.cid`,
    params: [importId, did],
  },
]

/** The walk listed one record path twice: two nodes of the tree hold the same key (not a valid MST). */
export const isDuplicatePathError = (err: unknown): boolean => /UNIQUE constraint failed: import_record/i.test(d1ErrorText(err))

/** The final batch found this import's staged rows gone (see finishImportStatements): its commit's guard refused it. */
export const isStagingGoneError = isCommitGuardError

/** What the walk found missing: MST nodes and record blocks the CAR did not hold (a few of each, and the counts). */
export const findMissing = async (
  db: Db,
  importId: string,
): Promise<{ nodes: number; records: number; examples: string[]; recordCount: number; nodeCount: number }> => {
  const [nodes, records, counts] = await db.batchSql([
    {
      sql: `SELECT n.cid AS cid FROM import_node n LEFT JOIN import_block b ON b.import_id = n.import_id AND b.cid = n.cid
        WHERE n.import_id = ? AND b.node_json IS NULL`,
      params: [importId],
    },
    {
      sql: `SELECT ir.uri AS uri, ir.cid AS cid FROM import_record ir LEFT JOIN import_block r ON r.import_id = ir.import_id AND r.cid = ir.cid
        WHERE ir.import_id = ? AND r.record_json IS NULL LIMIT 5`,
      params: [importId],
    },
    {
      sql: 'SELECT (SELECT count(*) FROM import_record WHERE import_id = ?1) AS records, (SELECT count(*) FROM import_node WHERE import_id = ?1) AS nodes',
      params: [importId],
    },
  ])
  const missingNodes = nodes as { cid: string }[]
  const missingRecords = records as { uri: string; cid: string }[]
  const count = (counts as { records: number; nodes: number }[])[0]
  return {
    nodes: missingNodes.length,
    records: missingRecords.length,
    examples: [...missingNodes.slice(0, 5).map((n) => `MST node ${n.cid}`), ...missingRecords.map((r) => `record ${r.uri} (${r.cid})`)],
    recordCount: Number(count?.records ?? 0),
    nodeCount: Number(count?.nodes ?? 0),
  }
}

export interface FinishImport {
  importId: string
  did: string
  commitCid: string
  rev: string
  /** The root this import replaces, or null for the first one. */
  prevRoot: string | null
  now: string
}

/**
 * The final batch: the imported tree becomes the repo. Blocks of the new
 * tree are stored (a block that left the repo earlier comes back), blocks of
 * the old tree that are not in the new one are marked removed, and only the
 * records that changed are rewritten, with their backlinks and blob
 * references. Staging rows are deleted in the same batch.
 */
export const finishImportStatements = (f: FinishImport): SqlStatement[] => {
  // ?1 import id, ?2 rev, ?3 now, ?4 commit CID (numbered parameters may repeat).
  const params = [f.importId, f.rev, f.now, f.commitCid]
  const inNewTree = `(cid = ?4 OR cid IN (SELECT cid FROM import_node WHERE import_id = ?1) OR cid IN (SELECT cid FROM import_record WHERE import_id = ?1))`
  const mine = `(SELECT uri FROM import_record WHERE import_id = ?1)`
  const changed = `(SELECT uri FROM import_record WHERE import_id = ?1 AND changed = 1)`
  const goneOrChanged = (column: string): string => `(${column} NOT IN ${mine} OR ${column} IN ${changed})`
  // D1 wants exactly as many bindings as the highest ?N a statement uses.
  const run = (sql: string): SqlStatement => ({ sql, params: params.slice(0, Math.max(...[...sql.matchAll(/\?(\d)/g)].map((m) => Number(m[1])))) })
  return [
    run(`UPDATE import_record SET changed = NOT EXISTS (SELECT 1 FROM record r WHERE r.uri = import_record.uri AND r.cid = import_record.cid) WHERE import_id = ?1`),
    // The commit chain first: its guards refuse a rev that does not increase. Every import starts by clearing
    // the staging tables, so another import may have emptied this one's after it was walked; on empty staging
    // the statements below would delete every record and leave the root without its blocks. The commit block
    // is staged until this batch ends, so without it committed_at is NULL and NOT NULL aborts the batch.
    {
      sql: `INSERT INTO commit_chain (cid, rev, prev, committed_at)
        VALUES (?1, ?2, ?3, (SELECT ?4 WHERE EXISTS (SELECT 1 FROM import_block WHERE import_id = ?5 AND cid = ?1)))`,
      params: [f.commitCid, f.rev, f.prevRoot ?? '', f.now, f.importId],
    },
    run(`INSERT INTO block (cid, rev, size, content)
      SELECT b.cid, ?2, length(b.content), b.content FROM import_block b WHERE b.import_id = ?1 AND ${inNewTree}
      ON CONFLICT (cid) DO UPDATE SET rev = CASE WHEN block.removed_rev IS NULL THEN block.rev ELSE excluded.rev END, removed_rev = NULL, removed_at = NULL`),
    run(`UPDATE block SET removed_rev = ?2, removed_at = ?3 WHERE removed_rev IS NULL AND NOT ${inNewTree}`),
    run(`UPDATE blob SET dereferenced_at = ?3 WHERE cid IN (SELECT blob_cid FROM record_blob WHERE ${goneOrChanged('record_uri')})`),
    run(`DELETE FROM record_blob WHERE ${goneOrChanged('record_uri')}`),
    run(`DELETE FROM backlink WHERE ${goneOrChanged('uri')}`),
    run(`DELETE FROM record WHERE uri NOT IN ${mine}`),
    run(`INSERT INTO record (uri, collection, rkey, cid, rev, indexed_at)
      SELECT uri, collection, rkey, cid, ?2, ?3 FROM import_record WHERE import_id = ?1 AND changed = 1
      ON CONFLICT (uri) DO UPDATE SET cid = excluded.cid, rev = excluded.rev, indexed_at = excluded.indexed_at`),
    run(`INSERT OR IGNORE INTO backlink (uri, path, link_to)
      SELECT r.uri, json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]') FROM import_record r JOIN json_each(r.backlinks_json) j
      WHERE r.import_id = ?1 AND r.changed = 1`),
    run(`INSERT OR IGNORE INTO record_blob (record_uri, blob_cid, rev)
      SELECT r.uri, j.value, ?2 FROM import_record r JOIN json_each(r.blobs_json) j WHERE r.import_id = ?1 AND r.changed = 1`),
    run(`UPDATE blob SET dereferenced_at = NULL
      WHERE cid IN (SELECT j.value FROM import_record r JOIN json_each(r.blobs_json) j WHERE r.import_id = ?1 AND r.changed = 1)`),
    {
      sql: `INSERT INTO repo_root (did, cid, rev, indexed_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (did) DO UPDATE SET cid = excluded.cid, rev = excluded.rev, indexed_at = excluded.indexed_at`,
      params: [f.did, f.commitCid, f.rev, f.now],
    },
    ...clearStagingStatements(),
  ]
}
