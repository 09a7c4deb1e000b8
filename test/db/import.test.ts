/**
 * stageBlocksStatements (src/db/import.ts) against the real local D1, which
 * like production refuses a statement over 100 KB of SQL text
 * (SQLITE_TOOBIG): blocks of any size a record may have (up to 1 MB) and
 * JSON of any content (quotes, non-ASCII, which takes more bytes than
 * characters) are staged byte for byte, in statements that D1 accepts.
 */
import { beforeEach, describe, expect, it } from 'vitest'
import { openDb } from '../../src/db/client'
import { stageBlocksStatements, type StagedBlock } from '../../src/db/import'
import { wipeDatabase, workerEnv } from '../repo/fixtures'

const D1_MAX_STATEMENT_BYTES = 100_000
const IMPORT_ID = '3f2b9c1e-0000-4000-8000-000000000001'
const utf8 = new TextEncoder()

const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
const bytesOf = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff)

/** A block with a made-up but plain CID (staging does not check CIDs; the stream did). */
const staged = (i: number, content: Uint8Array, json: Partial<StagedBlock> = {}): StagedBlock => ({
  cid: `bafytest${String(i).padStart(6, '0')}`,
  content,
  nodeJson: null,
  recordJson: null,
  ...json,
})

const stageAndReadBack = async (blocks: StagedBlock[]) => {
  const statements = stageBlocksStatements(IMPORT_ID, blocks)
  for (const s of statements) expect(utf8.encode(s.sql).byteLength).toBeLessThanOrEqual(D1_MAX_STATEMENT_BYTES)
  await openDb(workerEnv.DB).batchSql(statements)
  const rows = await workerEnv.DB.prepare(
    'SELECT cid, lower(hex(content)) AS content, node_json AS nodeJson, record_json AS recordJson FROM import_block WHERE import_id = ? ORDER BY cid',
  )
    .bind(IMPORT_ID)
    .all()
  expect(rows.results).toEqual(blocks.map((b) => ({ cid: b.cid, content: hex(b.content), nodeJson: b.nodeJson, recordJson: b.recordJson })))
  return statements
}

describe('stageBlocksStatements', () => {
  beforeEach(wipeDatabase)

  it('many small blocks share statements; quotes in JSON stay data', async () => {
    const hostile = JSON.stringify({ t: "x'); DELETE FROM block; --", b: [], l: [['subject', "did:plc:o'neil"]] })
    const blocks = Array.from({ length: 400 }, (_, i) =>
      staged(i, bytesOf(100 + i, i), i % 2 ? { recordJson: hostile } : { nodeJson: JSON.stringify({ c: [], k: [[`a/${i}`, 'b']] }) }),
    )
    const statements = await stageAndReadBack(blocks)
    expect(statements.length).toBeGreaterThan(1)
    expect(statements.length).toBeLessThan(blocks.length / 10)
  })

  it('blocks of up to 1 MB, alone or among small ones', async () => {
    const blocks = [staged(0, bytesOf(10, 0)), staged(1, bytesOf(44_000, 1)), staged(2, bytesOf(46_000, 2)), staged(3, bytesOf(1_000_000, 3)), staged(4, bytesOf(10, 4))]
    await stageAndReadBack(blocks)
  })

  it('JSON whose characters take several UTF-8 bytes', async () => {
    // 20,000 characters of 3 bytes each: 60 KB of SQL per row although the string length is 20,000.
    const wide = JSON.stringify({ t: 'app.example.wide', b: [], l: [['subject', '語'.repeat(20_000)]] })
    await stageAndReadBack(Array.from({ length: 6 }, (_, i) => staged(i, bytesOf(50, i), { recordJson: wide })))
    await wipeDatabase()
    await stageAndReadBack([staged(10, bytesOf(50, 10), { recordJson: JSON.stringify({ t: '語'.repeat(40_000), b: [], l: [] }) })])
  })

  it('refuses a CID or import id that could break out of the SQL text', () => {
    expect(() => stageBlocksStatements(IMPORT_ID, [staged(0, bytesOf(1, 0), { cid: "bafy'),('x" })])).toThrow('not a plain identifier')
    expect(() => stageBlocksStatements("id'--", [staged(0, bytesOf(1, 0))])).toThrow('not a plain identifier')
  })
})
