/**
 * FirehoseHub's send budget (src/firehose/hub.ts, budget.ts) through the real
 * route, with the budget shrunk to a few frames: a socket that runs out stops
 * where it is (replaying or live, without holding anyone else up); after the
 * object is rebuilt (the proof that the runtime flushed its sockets) it
 * resumes with no gap and no duplicate; held too long without that proof it
 * is cut off with `ConsumerTooSlow`. Also the cursor parameter, refused as
 * the reference refuses it.
 */
import { abortAllDurableObjects, evictDurableObject, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { openDb } from '../../src/db/client'
import { getSeqBounds } from '../../src/db/seq'
import type { SendBudget } from '../../src/firehose/budget'
import { firehoseHub, type FirehoseHub } from '../../src/firehose/hub'
import { commitWrites, type RepoContext } from '../../src/repo/commit'
import { ensureGenesis, newRepoContext, prepareThing, workerEnv } from '../repo/fixtures'
import { closeAll, Subscriber } from './subscriber'

const hub = (): DurableObjectStub<FirehoseHub> => firehoseHub(workerEnv)

interface Attachment {
  lastSeq: number
  live: boolean
  unconfirmed: number
  heldAt: number | null
}

const attachments = (): Promise<Attachment[]> =>
  runInDurableObject(hub(), (_instance: FirehoseHub, state) => state.getWebSockets().map((ws) => ws.deserializeAttachment() as Attachment))

/** Shrinks the budget of the current hub instance (a rebuilt one starts with the default again). */
const setLimits = (limits: Partial<SendBudget>): Promise<void> =>
  runInDurableObject(hub(), (instance: FirehoseHub) => {
    instance.limits = { ...instance.limits, ...limits }
  })

/** Rebuilds the hub with its sockets hibernated: the proof of delivery the hub waits for. */
const rebuild = (): Promise<void> => evictDurableObject(hub(), { webSockets: 'hibernate' })

const until = async (what: string, done: () => Promise<boolean> | boolean): Promise<void> => {
  const deadline = Date.now() + 10_000
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 100))

let ctx: RepoContext
let n = 0
const commit = async (count = 1): Promise<void> => {
  for (let i = 0; i < count; i++) await commitWrites(ctx, [await prepareThing(ctx.did, `budget ${n++}`)])
  await hub().notify()
}
const lastSeq = async (): Promise<number> => (await getSeqBounds(openDb(workerEnv.DB))).last ?? 0
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

beforeAll(async () => {
  ctx = await newRepoContext()
  await ensureGenesis(ctx)
  await commit(2)
})

afterEach(async () => {
  await closeAll()
  // The next test starts from a fresh instance with the default budget.
  await rebuild()
})

afterAll(async () => {
  await abortAllDurableObjects()
})

describe('send budget', () => {
  it('a replay stops at the budget, resumes after a rebuild, and joins the live stream exactly once', async () => {
    const from = await lastSeq()
    await commit(6)
    const head = await lastSeq()
    await setLimits({ maxUnconfirmedBytes: 2_500 })

    const sub = await Subscriber.connect(from)
    await until('the socket to be held', async () => (await attachments()).some((a) => a.heldAt !== null))
    await settle()
    const sent = sub.seqs()
    expect(sent.length).toBeGreaterThan(0)
    expect(sent.length).toBeLessThan(head - from)
    expect(sent).toEqual(range(from + 1, from + sent.length))
    const total = sub.frames.reduce((sum, f) => sum + f.size, 0)
    expect(total).toBeLessThanOrEqual(2_500)
    expect(await attachments()).toEqual([{ lastSeq: from + sent.length, live: false, unconfirmed: total, heldAt: expect.any(Number) }])

    // A live commit while it is held does not reach it (it keeps its place in the log)...
    await commit()
    await settle()
    expect(sub.seqs()).toEqual(sent)

    // ...until the object is rebuilt and its alarm resumes the socket, now with the default budget.
    await rebuild()
    expect(await runDurableObjectAlarm(hub())).toBe(true)
    await sub.waitFor(head + 1 - from)
    await commit()
    await sub.waitFor(head + 2 - from)
    await settle()
    expect(sub.seqs()).toEqual(range(from + 1, head + 2))
    expect((await attachments())[0]).toMatchObject({ live: true, heldAt: null, lastSeq: head + 2 })
  })

  it('a live socket out of budget is held without holding up the others', async () => {
    const head = await lastSeq()
    const slow = await Subscriber.connect()
    await until('the socket to be live', async () => (await attachments()).every((a) => a.live))
    await setLimits({ maxUnconfirmedBytes: 2_500 })
    await commit(5)
    await until('the socket to be held', async () => (await attachments()).some((a) => a.heldAt !== null))
    const held = slow.seqs()
    expect(held.length).toBeLessThan(5)

    // A socket that joins now has its own budget and gets what the held one lacks.
    await setLimits({ maxUnconfirmedBytes: 1024 * 1024 })
    const other = await Subscriber.connect(head)
    await other.waitFor(5)
    await commit()
    await other.waitFor(6)
    expect(other.seqs()).toEqual(range(head + 1, head + 6))
    expect(slow.seqs()).toEqual(held)

    await rebuild()
    await runDurableObjectAlarm(hub())
    await slow.waitFor(6)
    await settle()
    expect(slow.seqs()).toEqual(range(head + 1, head + 6))
  })

  it('a socket held too long without proof of delivery is cut off with ConsumerTooSlow', async () => {
    const from = await lastSeq()
    await commit(4)
    await setLimits({ maxUnconfirmedBytes: 2_000, maxHoldMs: 0 })
    const sub = await Subscriber.connect(from)
    await until('the socket to be held', async () => (await attachments()).some((a) => a.heldAt !== null))
    // The alarm comes before any rebuild: no proof, and the hold is over.
    expect(await runDurableObjectAlarm(hub())).toBe(true)
    const closed = await sub.closed
    expect(closed.code).toBe(1008)
    expect(closed.reason).toBe('ConsumerTooSlow')
    const last = sub.frames.at(-1)!
    expect(last).toMatchObject({ header: { op: -1 }, body: { error: 'ConsumerTooSlow', message: 'Stream consumer too slow' } })
    // What it got before is a gap-free prefix.
    const events = sub.seqs().slice(0, -1)
    expect(events).toEqual(range(from + 1, from + events.length))
    await sub.close()
  })
})

describe('cursor parameter', () => {
  it.each([['0x10'], ['%201'], ['1.5'], ['1e3'], ['1&cursor=2']])('cursor=%s is refused with InvalidRequest, as the reference does', async (value) => {
    const sub = await Subscriber.connectQuery(`?cursor=${value}`)
    const closed = await sub.closed
    expect({ code: closed.code, reason: closed.reason }).toEqual({ code: 1008, reason: 'InvalidRequest' })
    expect(sub.frames).toHaveLength(1)
    expect(sub.frames[0].header).toEqual({ op: -1 })
    expect(sub.frames[0].body).toMatchObject({ error: 'InvalidRequest' })
    expect(String(sub.frames[0].body.message)).toMatch(/^Invalid com\.atproto\.sync\.subscribeRepos params: Expected integer value type/)
    await sub.close()
  })

  it('cursor=0x10 does not replay from 17, nor cursor=%201 from 2: the exact reference message', async () => {
    const sub = await Subscriber.connectQuery('?cursor=0x10')
    await sub.closed
    expect(sub.frames.map((f) => f.body)).toEqual([
      { error: 'InvalidRequest', message: 'Invalid com.atproto.sync.subscribeRepos params: Expected integer value type (got "0x10")' },
    ])
    await sub.close()
  })

  it('a negative cursor replays from the first event; an empty one means no cursor', async () => {
    const { first, last } = await getSeqBounds(openDb(workerEnv.DB))
    const all = await Subscriber.connect(-1)
    await all.waitFor(last! - first! + 1)
    expect(all.seqs()).toEqual(range(first!, last!))
    expect(all.frames.every((f) => f.header.op === 1)).toBe(true)

    const none = await Subscriber.connectQuery('?cursor=')
    await until('the socket to be live', async () => (await attachments()).filter((a) => a.live).length === 2)
    await commit()
    await none.waitFor(1)
    expect(none.seqs()).toEqual([last! + 1])
  })
})
