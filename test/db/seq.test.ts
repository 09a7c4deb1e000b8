/**
 * The firehose log (src/db/seq.ts, src/db/state.ts): event bodies over 512 KiB
 * are split over repo_seq_chunk rows and read back byte for byte, in seq
 * order among ordinary events; pruning removes old events with their chunks
 * but always keeps the newest, so seq numbers and cursors stay meaningful.
 */
import { beforeEach, describe, expect, it } from 'vitest'
import { openDb, type Db } from '../../src/db/client'
import { firstSeqSince, getSeqBounds, pruneEventsBefore, readEventsAfter } from '../../src/db/seq'
import { appendEventStatements, EVENT_CHUNK_BYTES } from '../../src/db/state'
import { rowCounts, wipeDatabase, workerEnv } from '../repo/fixtures'

/** Deterministic, incompressible-looking bytes (so a mix-up of chunks shows). */
const bytesOf = (length: number, seed: number): Uint8Array => {
  const out = new Uint8Array(length)
  let x = seed * 2654435761 + 1
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    out[i] = x >>> 24
  }
  return out
}

const append = async (db: Db, events: { type: string; bytes: Uint8Array; at: string }[]): Promise<void> => {
  await db.batchSql(events.flatMap((e) => appendEventStatements(e.type, e.bytes, e.at)))
}

const chunkRows = async (): Promise<{ seq: number; idx: number; size: number }[]> =>
  (
    await workerEnv.DB.prepare('SELECT seq, idx, length(data) AS size FROM repo_seq_chunk ORDER BY seq, idx').all<{
      seq: number
      idx: number
      size: number
    }>()
  ).results

describe('event chunking', () => {
  beforeEach(wipeDatabase)

  it('an event over 512 KiB is split and reassembled byte for byte, between ordinary events', async () => {
    const db = openDb(workerEnv.DB)
    const now = new Date().toISOString()
    const small = bytesOf(100, 1)
    const big = bytesOf(2 * EVENT_CHUNK_BYTES + 12_345, 2)
    const exact = bytesOf(EVENT_CHUNK_BYTES, 3)
    await append(db, [
      { type: 'identity', bytes: small, at: now },
      { type: 'commit', bytes: big, at: now },
      { type: 'commit', bytes: exact, at: now },
    ])

    const stored = await workerEnv.DB.prepare('SELECT seq, chunks, length(event) AS size FROM repo_seq ORDER BY seq').all<{
      seq: number
      chunks: number
      size: number
    }>()
    const [s1, s2, s3] = stored.results
    expect([s1.chunks, s2.chunks, s3.chunks]).toEqual([0, 3, 0])
    expect(s2.size).toBe(0)
    expect(await chunkRows()).toEqual([
      { seq: s2.seq, idx: 0, size: EVENT_CHUNK_BYTES },
      { seq: s2.seq, idx: 1, size: EVENT_CHUNK_BYTES },
      { seq: s2.seq, idx: 2, size: 12_345 },
    ])

    const events = await readEventsAfter(db, 0, 10)
    expect(events.map((e) => [e.seq, e.eventType])).toEqual([
      [s1.seq, 'identity'],
      [s2.seq, 'commit'],
      [s3.seq, 'commit'],
    ])
    expect(events[0].event).toEqual(small)
    expect(events[1].event).toEqual(big)
    expect(events[2].event).toEqual(exact)
    // Reading from the middle starts after the cursor.
    expect((await readEventsAfter(db, s1.seq, 1)).map((e) => e.seq)).toEqual([s2.seq])
  })

  it('two chunked events in one batch each get their own chunks', async () => {
    const db = openDb(workerEnv.DB)
    const now = new Date().toISOString()
    const one = bytesOf(EVENT_CHUNK_BYTES + 1, 4)
    const two = bytesOf(EVENT_CHUNK_BYTES + 2, 5)
    await append(db, [
      { type: 'commit', bytes: one, at: now },
      { type: 'commit', bytes: two, at: now },
    ])
    const events = await readEventsAfter(db, 0, 10)
    expect(events).toHaveLength(2)
    expect(events[0].event).toEqual(one)
    expect(events[1].event).toEqual(two)
    expect((await chunkRows()).map((r) => r.seq)).toEqual([events[0].seq, events[0].seq, events[1].seq, events[1].seq])
  })

  // BUG (src/db/seq.ts readEventsAfter): the chunk query binds every chunked
  // seq of the page in one `IN (...)`; D1 allows 100 bound parameters, so a
  // page holding more than 100 chunked events fails with "too many SQL
  // variables". The hub reads pages of 500, so a relay replaying across 101
  // large commits is dropped (1011) at the same cursor on every reconnect.
  it('reads a page holding more than 100 chunked events', async () => {
    const db = openDb(workerEnv.DB)
    // 101 events stored as chunked (two pieces each). The pieces are small
    // here: readEventsAfter only concatenates, and 101 real >512 KiB bodies
    // (53 MB) would only make the test slow.
    const count = 101
    await workerEnv.DB.batch([
      workerEnv.DB.prepare(
        `INSERT INTO repo_seq (event_type, event, sequenced_at, chunks)
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${count})
         SELECT 'commit', x'', ?, 2 FROM n`,
      ).bind(new Date().toISOString()),
      workerEnv.DB.prepare("INSERT INTO repo_seq_chunk (seq, idx, data) SELECT seq, 0, x'0102' FROM repo_seq"),
      workerEnv.DB.prepare("INSERT INTO repo_seq_chunk (seq, idx, data) SELECT seq, 1, x'03' FROM repo_seq"),
    ])
    const events = await readEventsAfter(db, 0, 500)
    expect(events).toHaveLength(count)
    for (const e of events) expect([...e.event]).toEqual([1, 2, 3])
  })
})

describe('bounds and pruning', () => {
  beforeEach(wipeDatabase)

  it('getSeqBounds and firstSeqSince', async () => {
    const db = openDb(workerEnv.DB)
    expect(await getSeqBounds(db)).toEqual({ first: null, last: null })
    await append(db, [
      { type: 'commit', bytes: bytesOf(10, 1), at: '2026-01-01T00:00:00.000Z' },
      { type: 'commit', bytes: bytesOf(10, 2), at: '2026-01-02T00:00:00.000Z' },
      { type: 'commit', bytes: bytesOf(10, 3), at: '2026-01-03T00:00:00.000Z' },
    ])
    const { first, last } = await getSeqBounds(db)
    expect(last! - first!).toBe(2)
    expect(await firstSeqSince(db, '2026-01-02T00:00:00.000Z')).toBe(first! + 1)
    expect(await firstSeqSince(db, '2026-02-01T00:00:00.000Z')).toBeNull()
  })

  it('pruneEventsBefore deletes old events and their chunks, keeps newer ones', async () => {
    const db = openDb(workerEnv.DB)
    const old = '2026-01-01T00:00:00.000Z'
    const recent = '2026-01-05T00:00:00.000Z'
    await append(db, [
      { type: 'identity', bytes: bytesOf(10, 1), at: old },
      { type: 'commit', bytes: bytesOf(EVENT_CHUNK_BYTES + 5, 2), at: old },
      { type: 'commit', bytes: bytesOf(10, 3), at: old },
    ])
    const keptBig = bytesOf(EVENT_CHUNK_BYTES + 7, 4)
    await append(db, [
      { type: 'commit', bytes: keptBig, at: recent },
      { type: 'commit', bytes: bytesOf(10, 5), at: recent },
    ])
    const { first } = await getSeqBounds(db)

    // Bounded per call.
    expect(await pruneEventsBefore(db, '2026-01-03T00:00:00.000Z', 2)).toBe(2)
    expect(await pruneEventsBefore(db, '2026-01-03T00:00:00.000Z', 100)).toBe(1)
    expect(await pruneEventsBefore(db, '2026-01-03T00:00:00.000Z', 100)).toBe(0)

    const left = await readEventsAfter(db, 0, 10)
    expect(left.map((e) => e.seq)).toEqual([first! + 3, first! + 4])
    expect(left[0].event).toEqual(keptBig)
    // Only the kept chunked event's chunks remain.
    expect(new Set((await chunkRows()).map((r) => r.seq))).toEqual(new Set([first! + 3]))
  })

  it('pruning keeps the newest event even when it is old', async () => {
    const db = openDb(workerEnv.DB)
    const old = '2026-01-01T00:00:00.000Z'
    await append(db, [
      { type: 'commit', bytes: bytesOf(10, 1), at: old },
      { type: 'commit', bytes: bytesOf(EVENT_CHUNK_BYTES + 1, 2), at: old },
    ])
    const { last } = await getSeqBounds(db)
    expect(await pruneEventsBefore(db, '2026-06-01T00:00:00.000Z', 100)).toBe(1)
    expect(await getSeqBounds(db)).toEqual({ first: last, last })
    const [kept] = await readEventsAfter(db, 0, 10)
    expect(kept.event).toEqual(bytesOf(EVENT_CHUNK_BYTES + 1, 2))
    expect((await rowCounts()).repo_seq_chunk).toBe(2)
  })
})
