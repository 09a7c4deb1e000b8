/**
 * FirehoseHub's live path (src/firehose/hub.ts): the Worker hands the hub each
 * commit's events with their seqs, and live subscribers are served from that,
 * each event framed once for all of them and the log not read. Whatever
 * happens to the notifications (out of order, lost, arriving at a rebuilt
 * object, naming a seq the log does not hold) every socket still gets every
 * event exactly once, in order, from the log where memory cannot prove it.
 */
import { abortAllDurableObjects, evictDurableObject, runInDurableObject } from 'cloudflare:test'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { openDb } from '../../src/db/client'
import { getSeqBounds, readEventsAfter } from '../../src/db/seq'
import type { CommittedEvent } from '../../src/firehose/events'
import { eventFrame } from '../../src/firehose/frames'
import { firehoseHub, type FirehoseHub } from '../../src/firehose/hub'
import { commitWrites, type RepoContext } from '../../src/repo/commit'
import { ensureGenesis, newRepoContext, prepareThing, workerEnv } from '../repo/fixtures'
import { closeAll, Subscriber } from './subscriber'

const hub = (): DurableObjectStub<FirehoseHub> => firehoseHub(workerEnv)

/** What the Worker passed to onCommit for each commit, oldest first. */
let announced: CommittedEvent[][] = []
let ctx: RepoContext
let n = 0

/** One commit; its events are kept, not sent: each test decides when (and whether) the hub hears of them. */
const commit = async (): Promise<CommittedEvent[]> => {
  await commitWrites(ctx, [await prepareThing(ctx.did, `live ${n++}`)])
  return announced.at(-1)!
}
/** One commit whose events reach the hub as the Worker sends them. */
const commitAndNotify = async (): Promise<void> => hub().notify(await commit())

const lastSeq = async (): Promise<number> => (await getSeqBounds(openDb(workerEnv.DB))).last ?? 0
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 100))

/** The hub's counters: frames it encoded, log reads it made. */
const counters = (): Promise<{ encoded: number; reads: number }> =>
  runInDurableObject(hub(), (instance: FirehoseHub) => ({ encoded: instance.framesEncoded, reads: instance.log.stats.queries }))

const liveSockets = (): Promise<number> =>
  runInDurableObject(hub(), (_instance: FirehoseHub, state) => state.getWebSockets().filter((ws) => (ws.deserializeAttachment() as { live?: boolean } | null)?.live).length)

const connectLive = async (count: number, cursor?: number): Promise<Subscriber[]> => {
  const subs: Subscriber[] = []
  for (let i = 0; i < count; i++) subs.push(await Subscriber.connect(cursor))
  const deadline = Date.now() + 10_000
  while ((await liveSockets()) < count) {
    if (Date.now() > deadline) throw new Error('sockets not live')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return subs
}

beforeAll(async () => {
  ctx = await newRepoContext({ onCommit: (events) => void announced.push(events ?? []) })
  await ensureGenesis(ctx)
})

afterEach(async () => {
  await closeAll()
  announced = []
  // Each test starts from a fresh instance (counters at zero, nothing in memory).
  await hub().stats()
  await evictDurableObject(hub(), { webSockets: 'hibernate' })
})

afterAll(async () => {
  await abortAllDurableObjects()
})

describe('live delivery from the commit notification', () => {
  it('the Worker hands over each event with the seq the log gave it, as stored', async () => {
    const before = await lastSeq()
    const events = await commit()
    expect(events.map((e) => e.seq)).toEqual([before + 1])
    const [stored] = await readEventsAfter(openDb(workerEnv.DB), before, 1)
    expect(events[0]).toEqual({ seq: stored.seq, type: stored.eventType, body: stored.event })
  })

  it('fifty subscribers: each event framed once, the log not read, the same bytes to all, as a replay frames them', async () => {
    const from = await lastSeq()
    const subs = await connectLive(50)
    const start = await counters()
    for (let i = 0; i < 4; i++) await commitAndNotify()
    for (const sub of subs) await sub.waitFor(4)
    await settle()
    const end = await counters()
    expect(end.encoded - start.encoded).toBe(4)
    expect(end.reads - start.reads).toBe(0)
    for (const sub of subs) expect(sub.seqs()).toEqual(range(from + 1, from + 4))
    // Byte for byte what the log's rows frame to (the replay path).
    const rows = await readEventsAfter(openDb(workerEnv.DB), from, 4)
    const expected = rows.map((row) => eventFrame(row.eventType, row.seq, row.event))
    for (const sub of subs) expect(sub.frames.map((f) => f.bytes)).toEqual(expected)
  })

  it('a notification that overtakes an earlier one: the gap is read from the log, the late one delivers nothing twice', async () => {
    const head = await lastSeq()
    const [sub] = await connectLive(1)
    const first = await commit()
    const second = await commit()
    await hub().notify(second)
    await sub.waitFor(2)
    await hub().notify(first)
    await commitAndNotify()
    await sub.waitFor(3)
    await settle()
    expect(sub.seqs()).toEqual(range(head + 1, head + 3))
  })

  it('a lost notification: the next one finds the gap and reads it; with none, the alarm does', async () => {
    const head = await lastSeq()
    const [sub] = await connectLive(1)
    await commit()
    await commitAndNotify()
    await sub.waitFor(2)
    expect(sub.seqs()).toEqual(range(head + 1, head + 2))

    await commit()
    await settle()
    expect(sub.frames).toHaveLength(2)
    await runInDurableObject(hub(), (instance: FirehoseHub) => instance.alarm())
    await sub.waitFor(3)
    await settle()
    expect(sub.seqs()).toEqual(range(head + 1, head + 3))
  })

  it('after a rebuild: the socket resumes from its attachment, from memory when the next event is the one after it, else from the log', async () => {
    const head = await lastSeq()
    const [sub] = await connectLive(1)
    await commitAndNotify()
    await sub.waitFor(1)
    await evictDurableObject(hub(), { webSockets: 'hibernate' })
    await commitAndNotify()
    await sub.waitFor(2)
    expect(await counters()).toMatchObject({ reads: 0 })

    await evictDurableObject(hub(), { webSockets: 'hibernate' })
    await commit()
    await commitAndNotify()
    await sub.waitFor(4)
    await settle()
    expect(sub.seqs()).toEqual(range(head + 1, head + 4))
  })

  it('a notification naming seqs the log does not hold does not wedge the stream', async () => {
    const head = await lastSeq()
    const [sub] = await connectLive(1)
    await hub().notify([{ seq: head + 50, type: 'commit', body: new Uint8Array([0xa0]) }])
    await commitAndNotify()
    await commitAndNotify()
    await sub.waitFor(2)
    await settle()
    expect(sub.seqs()).toEqual(range(head + 1, head + 2))
  })

  it('every event exactly once while subscribers replay and turn live during notified commits', async () => {
    const from = await lastSeq()
    const subs: Subscriber[] = []
    const writes = (async () => {
      for (let i = 0; i < 10; i++) await commitAndNotify()
    })()
    for (let i = 0; i < 4; i++) {
      subs.push(await Subscriber.connect(from))
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    await writes
    const expected = range(from + 1, await lastSeq())
    for (const sub of subs) {
      await sub.waitFor(expected.length)
      await settle()
      expect(sub.seqs()).toEqual(expected)
    }
  })
})
