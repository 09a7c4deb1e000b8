/**
 * Byte-bounded pages of the firehose log (src/db/seq.ts readEventPageAfter),
 * what the hub replays from: past the first event a page stops before the
 * byte bound (chunked bodies counted whole), and says whether it reached the
 * end of the log.
 */
import { beforeEach, describe, expect, it } from 'vitest'
import { openDb, type Db } from '../../src/db/client'
import { readEventPageAfter } from '../../src/db/seq'
import { appendEventStatements, EVENT_CHUNK_BYTES } from '../../src/db/state'
import { wipeDatabase, workerEnv } from '../repo/fixtures'

const append = async (db: Db, sizes: number[]): Promise<void> => {
  const now = new Date().toISOString()
  await db.batchSql(sizes.flatMap((size, i) => appendEventStatements('commit', new Uint8Array(size).fill(i + 1), now)))
}

describe('readEventPageAfter', () => {
  beforeEach(wipeDatabase)

  it('stops before the byte bound, counting chunked bodies whole, and always takes one event', async () => {
    const db = openDb(workerEnv.DB)
    const big = 2 * EVENT_CHUNK_BYTES + 10
    await append(db, [1000, 1000, big, 1000])

    const first = await readEventPageAfter(db, 0, 100, 2500)
    expect(first.rows.map((r) => r.event.byteLength)).toEqual([1000, 1000])
    expect(first.complete).toBe(false)

    // The chunked event alone is over the bound: it still comes, whole, on its own.
    const second = await readEventPageAfter(db, first.rows[1].seq, 100, 2500)
    expect(second.rows.map((r) => r.event.byteLength)).toEqual([big])
    expect(second.rows[0].event.every((b) => b === 3)).toBe(true)
    expect(second.complete).toBe(false)

    const last = await readEventPageAfter(db, second.rows[0].seq, 100, 2500)
    expect(last.rows.map((r) => r.event.byteLength)).toEqual([1000])
    expect(last.complete).toBe(true)
    expect(await readEventPageAfter(db, last.rows[0].seq, 100, 2500)).toEqual({ rows: [], complete: true })
  })

  it('a page cut by the event count is not complete; one that fits everything is', async () => {
    const db = openDb(workerEnv.DB)
    await append(db, [10, 10, 10])
    expect((await readEventPageAfter(db, 0, 2, 1_000_000)).complete).toBe(false)
    const all = await readEventPageAfter(db, 0, 3, 1_000_000)
    expect(all.rows).toHaveLength(3)
    // Exactly `limit` rows: there may be more, so not complete (the next read says).
    expect(all.complete).toBe(false)
    expect((await readEventPageAfter(db, 0, 4, 1_000_000)).complete).toBe(true)
  })
})
