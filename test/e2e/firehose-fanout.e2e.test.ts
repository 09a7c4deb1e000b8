/**
 * com.atproto.sync.subscribeRepos under load and across a restart, with real
 * WebSocket clients against `wrangler dev`: 50 subscribers connecting while
 * writes go on all get every frame; a consumer that never reads (its TCP
 * socket paused) does not hold up writes or other subscribers; and after a
 * restart of `wrangler dev` on the same state the log replays byte for byte
 * and the seq/rev/since chain continues. Every stream is verified with
 * helpers/firehose-verify.ts, as a relay would.
 *
 * FIREHOSE_SEED=n changes the write mix; FIREHOSE_DEBUG=1 prints the stalled
 * consumer's reports.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test'
import type { AtpAgent } from '@atproto/api'
import { login, type PdsProcess, startPds, stopPds } from './harness'
import { assertNoReload, firehoseUrl, logHead, resolveAtprotoKey, StalledConsumer, type Subscriber, subscribe, within } from './helpers/firehose-client'
import { type CommitBody, type Frame, isCommitFrame, seqOf, StreamChecker } from './helpers/firehose-verify'
import { Workload } from './helpers/firehose-workload'

const SEED = Number(process.env.FIREHOSE_SEED ?? 7_2026)
const SUBSCRIBERS = 50

let pds: PdsProcess
let agent: AtpAgent
let didKey: string
let workload: Workload
/** Connected with cursor 0 at the start; sees the whole log (until the restart). */
let watch: Subscriber
const opened: Subscriber[] = []
let stalled: StalledConsumer | undefined

const track = (sub: Subscriber): Subscriber => {
  opened.push(sub)
  return sub
}

const bodyOf = (frame: Frame): CommitBody => frame.body as unknown as CommitBody
const sameBytes = (a: Frame, b: Frame | undefined): boolean => b !== undefined && Buffer.from(a.bytes).equals(Buffer.from(b.bytes))
const checker = (start?: { seq: number; rev: string | null }): StreamChecker =>
  new StreamChecker({ didKey, repo: pds.did, contiguous: true }, start)

beforeAll(async () => {
  pds = await startPds()
  didKey = await resolveAtprotoKey(pds)
  agent = await login(pds)
  workload = new Workload(agent, pds.did, SEED)
  const [first] = await workload.runMix(1)
  watch = track(await subscribe(pds, 0))
  await watch.waitForCommit(first!.commit.cid)
}, 120_000)

// A hot reload of wrangler dev (someone edited the tree) silently kills the
// long-lived sockets: every later result would be noise, so say so instead.
afterEach(() => {
  if (pds) assertNoReload(pds, 0)
})

afterAll(async () => {
  await stalled?.stop()
  await Promise.all(opened.map((s) => s.close()))
  await stopPds(pds)
})

/**
 * Where a checker of the frames after `seq` starts: `seq` and the rev of the
 * last commit at or before it, read from the log (a live socket may have
 * skipped that commit).
 */
const startOf = async (seq: number): Promise<{ seq: number; rev: string | null }> => {
  const replay = await subscribe(pds, 0)
  await replay.waitForSeq(seq, 60_000)
  const commits = replay.frames.filter((f) => isCommitFrame(f) && seqOf(f) <= seq)
  await replay.close()
  return { seq, rev: commits.length ? bodyOf(commits.at(-1)!).rev : null }
}

/** What a stream lacks or has extra, compared with the commits the writes made (by position in `written`). */
const streamDiff = (frames: Frame[], written: string[]): { missing: number[]; unexpected: string[] } => {
  const got = frames.filter(isCommitFrame).map((f) => String(bodyOf(f).commit))
  const have = new Set(got)
  const want = new Set(written)
  return { missing: written.flatMap((c, i) => (have.has(c) ? [] : [i])), unexpected: got.filter((c) => !want.has(c)) }
}

test(`${SUBSCRIBERS} subscribers connecting while writes go on: every socket, old and new, gets every frame`, async () => {
  const head = await logHead(pds, watch.lastSeq!)
  const start = await startOf(head)
  // Connections and writes at the same time: each new socket's replay → live
  // hand-over races the commits, and no socket (the already-live watcher
  // included) may lose or repeat a frame.
  const connecting = Promise.all(Array.from({ length: SUBSCRIBERS }, () => subscribe(pds, head, 30_000)))
  const written = (await workload.runMix(30)).map((w) => w.commit.cid)
  const subs = (await connecting).map(track)
  const last = written.at(-1)!
  // Bounded, and judged below: a socket that skipped the last commit waits in vain.
  await Promise.all([watch, ...subs].map((s) => s.waitForCommit(last, 15_000).catch(() => {})))

  // Per socket (0 = the watcher, live before the burst): commits it lacks, by write index.
  const lacking = [watch, ...subs].flatMap((s, i) => {
    const diff = streamDiff(s.frames.filter((f) => seqOf(f) > head), written)
    return diff.missing.length || diff.unexpected.length ? [{ socket: i, ...diff }] : []
  })
  expect(lacking).toEqual([])
  // Every stream verifies as a contiguous chain, and all carry the same bytes.
  const reference = subs[0]!.frames
  expect(await checker(start).checkAll(reference)).toEqual([])
  expect(await checker(start).checkAll(watch.frames.filter((f) => seqOf(f) > head))).toEqual([])
  const differ = subs.flatMap((s, i) =>
    s.frames.length === reference.length && s.frames.every((f, j) => sameBytes(f, reference[j])) ? [] : [i + 1],
  )
  expect(differ).toEqual([])
  await Promise.all(subs.map((s) => s.close()))
}, 180_000)

test('new sockets going live while commits land never make an already-live socket skip a frame', async () => {
  // Aimed at the replay → live hand-over: a socket whose catch-up read
  // already saw commit N must not mark N as sent for the sockets already live.
  const ROUNDS = 15
  const head = await logHead(pds, watch.lastSeq!)
  const sockets: { sub: Subscriber; cursor: number }[] = [{ sub: watch, cursor: head }]
  for (let round = 0; round < ROUNDS; round++) {
    const cursor = watch.lastSeq!
    const joining = Promise.all(Array.from({ length: 4 }, () => subscribe(pds, cursor, 30_000)))
    await workload.runMix(1)
    for (const sub of await joining) sockets.push({ sub: track(sub), cursor })
  }
  await Bun.sleep(500)
  const [sentinel] = await workload.runMix(1)
  // The log itself is the ground truth: what each socket should have got.
  const log = track(await subscribe(pds, head))
  await log.waitForCommit(sentinel!.commit.cid)
  await Promise.all(sockets.map(({ sub }) => sub.waitForCommit(sentinel!.commit.cid, 10_000).catch(() => {})))
  const skipped = sockets.flatMap(({ sub, cursor }, i) => {
    const got = new Set(sub.frames.map(seqOf))
    const missing = log.frames.map(seqOf).filter((seq) => seq > cursor && !got.has(seq))
    return missing.length ? [`${i === 0 ? 'watcher' : `joiner ${i} (cursor ${cursor})`} lacks seq ${missing.join(',')}`] : []
  })
  expect(skipped).toEqual([])
  await Promise.all([log, ...sockets.slice(1).map(({ sub }) => sub)].map((s) => s.close()))
}, 180_000)

describe('a consumer that never reads', () => {
  const WRITES = 100
  /** ~6 MB of frames in all: more than loopback socket buffers hold, so the server side has to queue. */
  const PAYLOAD = 60_000
  let stalledFrom = 0

  test(`does not hold up ${WRITES} writes, nor delivery to others`, async () => {
    const head = await logHead(pds, watch.lastSeq!)
    const start = await startOf(head)
    stalledFrom = head
    stalled = await StalledConsumer.start(firehoseUrl(pds, head))
    // Let its (empty) catch-up finish before writing: the hand-over race has its own tests above.
    await Bun.sleep(300)
    const t0 = performance.now()
    const commits: string[] = []
    for (let i = 0; i < WRITES; i++) {
      // Bulk records in an unknown collection (stored, not validated), with the odd post in between.
      const res = await within(
        i % 10 === 9
          ? agent.com.atproto.repo.createRecord({
              repo: pds.did,
              collection: 'app.bsky.feed.post',
              record: { $type: 'app.bsky.feed.post', text: `while stalled ${i}`, createdAt: new Date().toISOString() },
            })
          : agent.com.atproto.repo.createRecord({
              repo: pds.did,
              collection: 'com.example.e2e.bulk',
              record: { $type: 'com.example.e2e.bulk', i, filler: `${i}:`.padEnd(PAYLOAD, 'x') },
            }),
        30_000,
        () => `write ${i} of ${WRITES} while a consumer is stalled`,
      )
      commits.push(res.data.commit!.cid)
    }
    const writeMs = performance.now() - t0
    // The reading subscriber got everything, verified.
    await watch.waitForCommit(commits.at(-1)!, 60_000)
    const sent = watch.frames.filter((f) => seqOf(f) > head)
    expect(sent.filter(isCommitFrame).map((f) => String(bodyOf(f).commit))).toEqual(commits)
    expect(await checker(start).checkAll(sent)).toEqual([])
    const bytes = sent.reduce((n, f) => n + f.bytes.byteLength, 0)

    const paused = await stalled.status()
    console.log(
      `stalled consumer: ${WRITES} writes in ${(writeMs / 1000).toFixed(1)} s; ${(bytes / 1e6).toFixed(1)} MB of frames; ` +
        `it had read ${paused.frames} of ${sent.length} frames while paused`,
    )
    // It really was not reading (otherwise this test proves nothing).
    expect(paused.frames!).toBeLessThan(sent.length)
  }, 300_000)

  test('once it reads again it gets a gap-free stream, or an explicit ConsumerTooSlow cut-off', async () => {
    if (!stalled) throw new Error('the stalled consumer did not start')
    const end = await logHead(pds, watch.lastSeq!)
    const from = stalled.reports.length
    stalled.resume()
    const closeReport = () => stalled!.reports.slice(from).find((r) => r.event === 'close')
    // The consumer reports when asked (or on close): poll, bounded.
    const deadline = Date.now() + 60_000
    let report = await stalled.status()
    while (report.lastSeq !== end && !closeReport() && Date.now() < deadline) {
      await Bun.sleep(200)
      report = await stalled.status()
    }
    const closed = closeReport()
    if (process.env.FIREHOSE_DEBUG) console.log(JSON.stringify(stalled.reports))
    if (closed) {
      // Cut off: allowed, but only with the error frame that says why.
      expect(closed.errors ?? []).toContain('ConsumerTooSlow: Stream consumer too slow')
    } else {
      expect({ firstSeq: report.firstSeq, lastSeq: report.lastSeq, gaps: report.gaps, errors: report.errors }).toEqual({
        firstSeq: stalledFrom + 1,
        lastSeq: end,
        gaps: [],
        errors: [],
      })
    }
    await stalled.stop()
    stalled = undefined
  }, 120_000)
})

describe('restart of wrangler dev with the same state', () => {
  let before: Frame[] = []

  test('the log replays byte for byte after the restart', async () => {
    const replayBefore = track(await subscribe(pds, 0))
    await replayBefore.waitForSeq(await logHead(pds, watch.lastSeq!), 60_000)
    before = replayBefore.frames
    expect(await checker({ seq: 0, rev: null }).checkAll(before)).toEqual([])
    await replayBefore.close()

    await pds.restart()
    // The watcher's connection went down with the old process.
    await watch.waitForClose(30_000)

    const replayAfter = track(await subscribe(pds, 0))
    await replayAfter.waitForSeq(seqOf(before.at(-1)!), 60_000)
    await Bun.sleep(300)
    expect(replayAfter.frames.map(seqOf)).toEqual(before.map(seqOf))
    expect(replayAfter.frames.every((f, i) => sameBytes(f, before[i]))).toBe(true)
    await replayAfter.close()
  }, 180_000)

  test('a subscriber resuming from its last seq gets the new commits, chained onto the old ones', async () => {
    expect(before.length).toBeGreaterThan(0)
    const lastSeq = watch.lastSeq!
    const lastCommit = watch.frames.filter(isCommitFrame).at(-1)!
    const resumed = track(await subscribe(pds, lastSeq))
    const written = await workload.runMix(20)
    await resumed.waitForCommit(written.at(-1)!.commit.cid, 60_000)
    expect(resumed.frames.filter(isCommitFrame).map((f) => String(bodyOf(f).commit))).toEqual(written.map((w) => w.commit.cid))
    // seq continues at lastSeq + 1; since = the last rev before the restart.
    expect(await checker({ seq: lastSeq, rev: bodyOf(lastCommit).rev }).checkAll(resumed.frames)).toEqual([])

    // And the whole log, from the first event, still verifies as one chain.
    const full = track(await subscribe(pds, 0))
    await full.waitForSeq(resumed.lastSeq!, 60_000)
    expect(await checker({ seq: 0, rev: null }).checkAll(full.frames)).toEqual([])
    expect(full.frames.slice(-resumed.frames.length).every((f, i) => sameBytes(f, resumed.frames[i]))).toBe(true)
    await Promise.all([resumed.close(), full.close()])
  }, 180_000)
})
