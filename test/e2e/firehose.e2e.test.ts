/**
 * com.atproto.sync.subscribeRepos end to end, checked the way a relay checks
 * it (sync v1.1): 200 mixed writes through the official client, a live `ws`
 * subscriber, and every `#commit` frame verified by helpers/firehose-verify.ts
 * (CAR root, signature against the key in the DID document, `since` chain,
 * ops in the MST built from the frame's blocks only, inversion to `prevData`)
 * and, as a second opinion, by @atproto/sync's authenticated commit parser.
 * Then replay from 0, reconnect from a mid cursor, and a future cursor.
 *
 * The commit-proof interop vectors already run in
 * test/vectors/commit-proof.test.ts (vitest); they are not repeated here.
 * Fan-out, slow consumers and restarts: firehose-fanout.e2e.test.ts.
 * FIREHOSE_SEED=n changes the write mix (the seed is printed).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test'
import type { AtpAgent } from '@atproto/api'
import { Secp256k1Keypair } from '@atproto/crypto'
import { decode } from '@atproto/lex-cbor'
import { type Cid, isCid } from '@atproto/lex-data'
import { blocksToCarFile, readCar } from '@atproto/repo'
import { parseCommitAuthenticated } from '@atproto/sync'
import { login, type PdsProcess, startPds, stopPds } from './harness'
import { assertNoReload, logHead, resolveAtprotoKey, type Subscriber, subscribe } from './helpers/firehose-client'
import { type CommitBody, type Frame, foldOps, isCommitFrame, seqOf, StreamChecker, verifyCommitBody } from './helpers/firehose-verify'
import { type ExpectedOp, Workload, type WriteResult } from './helpers/firehose-workload'
import { listAllRecords } from './xrpc-client'

const SEED = Number(process.env.FIREHOSE_SEED ?? 20261123)
const WRITES = 200

let pds: PdsProcess
let agent: AtpAgent
let didKey: string
let workload: Workload
/** Subscribed (no cursor) before any write; stays connected all file long. */
let live: Subscriber
/** Index in live.frames of the first frame of the 200-write run. */
let runStart = 0
let results: WriteResult[] = []
const opened: Subscriber[] = []

const track = (sub: Subscriber): Subscriber => {
  opened.push(sub)
  return sub
}

const bodyOf = (frame: Frame): CommitBody => frame.body as unknown as CommitBody

const opsOf = (frame: Frame): ExpectedOp[] =>
  bodyOf(frame).ops.map((op) => ({
    action: op.action,
    path: op.path,
    cid: op.cid ? op.cid.toString() : null,
    ...(op.prev ? { prev: op.prev.toString() } : {}),
  }))

beforeAll(async () => {
  pds = await startPds()
  didKey = await resolveAtprotoKey(pds)
  agent = await login(pds)
  workload = new Workload(agent, pds.did, SEED)
  live = track(await subscribe(pds))
  // "No cursor" means "from now on": write until the live socket sees a
  // write, so we know it is attached before the measured run starts.
  for (let attempt = 0; ; attempt++) {
    const warm = await workload.createPost()
    try {
      await live.waitForCommit(warm.commit.cid, 3_000)
      break
    } catch (err) {
      if (attempt >= 4) throw err
    }
  }
}, 120_000)

// A hot reload of wrangler dev (someone edited the tree) silently kills the
// long-lived sockets: every later result would be noise, so say so instead.
afterEach(() => {
  if (pds) assertNoReload(pds, 0)
})

afterAll(async () => {
  await Promise.all(opened.map((s) => s.close()))
  await stopPds(pds)
})

test('the DID document names the signing key the harness gave the PDS', () => {
  expect(didKey).toBe(pds.didKey)
})

describe(`${WRITES} mixed writes`, () => {
  test('each commit arrives live, once, in order, as a frame a relay accepts', async () => {
    runStart = live.frames.length
    const t0 = performance.now()
    results = await workload.runMix(WRITES)
    const writeMs = performance.now() - t0
    await live.waitForCommit(results.at(-1)!.commit.cid, 60_000)
    const frames = live.frames.slice(runStart).filter(isCommitFrame)
    console.log(
      `firehose e2e (seed ${SEED}): ${WRITES} write calls, ${results.reduce((n, r) => n + r.ops.length, 0)} ops in ` +
        `${(writeMs / 1000).toFixed(1)} s; live frames ${frames.length}`,
    )
    expect(live.undecodable).toEqual([])

    // Every kind of write is in the mix.
    const kinds = new Set(results.map((r) => r.kind.replace(/-\d+$/, '')))
    for (const kind of ['post', 'like', 'like-again', 'follow', 'profile-create', 'profile-update', 'post-edit', 'batch']) {
      expect(kinds).toContain(kind)
    }
    expect([...kinds].filter((k) => k.startsWith('delete-')).length).toBeGreaterThanOrEqual(2)

    // One frame per commit, in the order the writes were made.
    expect(frames.map((f) => String(bodyOf(f).commit))).toEqual(results.map((r) => r.commit.cid))
    expect(frames.map((f) => bodyOf(f).rev)).toEqual(results.map((r) => r.commit.rev))
    // Each frame carries exactly the ops the client asked for (with prev CIDs).
    const opMismatches = results.flatMap((r, i) => {
      const got = opsOf(frames[i]!)
      return JSON.stringify(got) === JSON.stringify(r.ops) ? [] : [{ seq: seqOf(frames[i]!), kind: r.kind, expected: r.ops, got }]
    })
    expect(opMismatches).toEqual([])

    // The relay checks, on every live frame since the socket attached.
    const checker = new StreamChecker({ didKey, repo: pds.did, contiguous: true })
    expect(await checker.checkAll(live.frames)).toEqual([])
    expect(checker.commits).toBeGreaterThanOrEqual(WRITES + 1)
  }, 300_000)

  test("@atproto/sync's authenticated parser accepts every op of every frame", async () => {
    expect(results.length).toBe(WRITES)
    const idResolver = { did: { resolveAtprotoKey: async () => didKey } }
    const rejected: string[] = []
    for (const frame of live.frames.slice(runStart).filter(isCommitFrame)) {
      const body = bodyOf(frame)
      const events = await parseCommitAuthenticated(idResolver as never, body as never)
      const got = events.map((e) => `${e.event} ${e.collection}/${e.rkey}`)
      const want = body.ops.map((op) => `${op.action} ${op.path}`)
      if (JSON.stringify(got) !== JSON.stringify(want)) rejected.push(`seq ${body.seq}: verified ${got}, frame has ${want}`)
    }
    expect(rejected).toEqual([])
  }, 120_000)

  test('replay from cursor 0 equals the live stream and verifies from the first commit', async () => {
    expect(results.length).toBe(WRITES)
    const lastSeq = live.lastSeq!
    const replay = track(await subscribe(pds, 0))
    await replay.waitForSeq(lastSeq, 60_000)
    expect(replay.undecodable).toEqual([])
    // The whole history from seq 1, no gaps; the first commit is the genesis (since null).
    expect(seqOf(replay.frames[0]!)).toBe(1)
    const genesis = replay.frames.find(isCommitFrame)!
    expect(bodyOf(genesis).since).toBeNull()
    expect(bodyOf(genesis).ops).toEqual([])
    const checker = new StreamChecker({ didKey, repo: pds.did, contiguous: true }, { seq: 0, rev: null })
    expect(await checker.checkAll(replay.frames)).toEqual([])
    expect(replay.lastSeq).toBe(lastSeq)

    // Byte for byte what the live socket was sent, for every seq it saw.
    const bySeq = new Map(replay.frames.map((f) => [seqOf(f), f.bytes]))
    const differ = live.frames.filter((f) => !Buffer.from(f.bytes).equals(Buffer.from(bySeq.get(seqOf(f)) ?? [])))
    expect(differ.map(seqOf)).toEqual([])

    // And the ops of the whole history add up to the repo's records.
    const fromStream = foldOps(replay.frames)
    const listed = await listAllRecords(pds, pds.did)
    expect(new Map([...fromStream].sort())).toEqual(new Map([...listed].sort()))
    expect(new Map([...workload.live].map(([p, r]): [string, string] => [p, r.cid]).sort())).toEqual(new Map([...listed].sort()))
    await replay.close()
  }, 120_000)

  test('a subscriber reconnecting from a mid cursor gets exactly the frames after it', async () => {
    expect(results.length).toBe(WRITES)
    const midFrame = live.frames[runStart + Math.floor(WRITES / 2)]!
    const mid = seqOf(midFrame)
    const sub = track(await subscribe(pds, mid))
    await sub.waitForSeq(live.lastSeq!, 60_000)
    const expected = live.frames.filter((f) => seqOf(f) > mid)
    expect(sub.frames.map(seqOf)).toEqual(expected.map(seqOf))
    expect(sub.frames.every((f, i) => Buffer.from(f.bytes).equals(Buffer.from(expected[i]!.bytes)))).toBe(true)
    // Its first frame chains onto the cursor frame.
    const checker = new StreamChecker({ didKey, repo: pds.did, contiguous: true }, { seq: mid, rev: bodyOf(midFrame).rev })
    expect(await checker.checkAll(sub.frames)).toEqual([])
    await sub.close()
  }, 120_000)
})

test('disconnecting and reconnecting with the last seen seq while writes go on misses nothing', async () => {
  const startSeq = live.lastSeq!
  const startRev = bodyOf(live.frames.filter(isCommitFrame).at(-1)!).rev
  const first = track(await subscribe(pds, startSeq))
  const writing = workload.runMix(40)
  await first.waitForCount(10, 60_000)
  await first.close()
  const resumeAt = first.lastSeq!
  const second = track(await subscribe(pds, resumeAt))
  const written = await writing
  await second.waitForCommit(written.at(-1)!.commit.cid, 60_000)

  // Ground truth: the log from the same starting point, read after the writes.
  const log = track(await subscribe(pds, startSeq))
  await log.waitForCommit(written.at(-1)!.commit.cid, 60_000)
  const joined = [...first.frames, ...second.frames]
  expect(joined.map(seqOf)).toEqual(log.frames.map(seqOf))
  expect(joined.every((f, i) => Buffer.from(f.bytes).equals(Buffer.from(log.frames[i]!.bytes)))).toBe(true)
  expect(joined.filter(isCommitFrame).map((f) => String(bodyOf(f).commit))).toEqual(written.map((w) => w.commit.cid))
  const checker = new StreamChecker({ didKey, repo: pds.did, contiguous: true }, { seq: startSeq, rev: startRev })
  expect(await checker.checkAll(joined)).toEqual([])
  await Promise.all([second.close(), log.close()])
}, 180_000)

describe('cursors at and past the head', () => {
  const headSeq = (): Promise<number> => logHead(pds, live.lastSeq ?? 0)

  test('a future cursor gets {op:-1} + {error: FutureCursor}, then the server closes', async () => {
    const head = await headSeq()
    const sub = track(await subscribe(pds, head + 1000))
    await sub.waitForServerClose(5_000)
    expect(sub.frames.map((f) => f.header)).toEqual([{ op: -1 }])
    expect(sub.frames[0]!.body.error).toBe('FutureCursor')
    expect(sub.undecodable).toEqual([])
    // Nothing is streamed after the error, even when new commits arrive.
    const [w] = await workload.runMix(1)
    await live.waitForCommit(w!.commit.cid, 15_000)
    expect(sub.frames.length).toBe(1)
    await sub.close()
  })

  test('a cursor equal to the head is not in the future: the next commit arrives, nothing before it', async () => {
    const head = await headSeq()
    const sub = track(await subscribe(pds, head))
    await Bun.sleep(500)
    expect(sub.frames).toEqual([])
    expect(sub.closeInfo).toBeNull()
    const [w] = await workload.runMix(1)
    await sub.waitForCommit(w!.commit.cid, 15_000)
    expect(sub.frames.map(seqOf)).toEqual([head + 1])
    await sub.close()
  })
})

describe('the verifier rejects broken frames (so its passes mean something)', () => {
  /** A real frame of the run whose ops include `action`, with at least two MST nodes in its CAR. */
  const frameWith = async (action: string): Promise<Frame> => {
    for (const frame of live.frames.slice(runStart).filter(isCommitFrame)) {
      const body = bodyOf(frame)
      if (!body.ops.some((op) => op.action === action)) continue
      const { blocks } = await readCar(body.blocks)
      if (mstNodes(blocks).length >= 2) return frame
    }
    throw new Error(`no frame with a ${action} op and two MST nodes`)
  }

  const mstNodes = (blocks: Awaited<ReturnType<typeof readCar>>['blocks']): Cid[] =>
    blocks.cids().filter((cid) => {
      const value = decode(blocks.get(cid)!) as Record<string, unknown>
      return Array.isArray(value?.e) && 'l' in value
    })

  const withoutBlock = async (body: CommitBody, cid: Cid): Promise<Uint8Array> => {
    const { blocks } = await readCar(body.blocks)
    blocks.delete(cid)
    return blocksToCarFile(body.commit, blocks)
  }

  const check = async (body: Record<string, unknown>, opts: { key?: string; prevRev?: string } = {}): Promise<string[]> =>
    (await verifyCommitBody(body, { didKey: opts.key ?? didKey, prevRev: opts.prevRev })).problems

  test('an intact frame passes; a wrong key, since or prevData fails', async () => {
    const body = bodyOf(await frameWith('update'))
    expect(await check(body as never, { prevRev: body.since ?? undefined })).toEqual([])
    const otherKey = (await Secp256k1Keypair.create()).did()
    expect((await check(body as never, { key: otherKey })).join('\n')).toContain('signature does not verify')
    expect((await check(body as never, { prevRev: '2222222222222' })).join('\n')).toContain('since is')
    const { data } = await verifyCommitBody(body as never, { didKey })
    expect(isCid(data)).toBe(true)
    expect((await check({ ...body, prevData: data } as never)).join('\n')).toContain('not prevData')
    expect((await check({ ...body, commit: body.prevData } as never)).join('\n')).toContain('CAR root')
  })

  test('a frame missing its MST root node, or a record block, fails', async () => {
    for (const action of ['update', 'delete', 'create']) {
      const body = bodyOf(await frameWith(action))
      const { data } = await verifyCommitBody(body as never, { didKey })
      const cut = await withoutBlock(body, data!)
      const problems = await check({ ...body, blocks: cut } as never)
      expect(problems.join('\n')).toMatch(/cannot look the key up|inverting the ops/)
    }
    const created = bodyOf(await frameWith('create'))
    const op = created.ops.find((o) => o.action === 'create')!
    const problems = await check({ ...created, blocks: await withoutBlock(created, op.cid!) } as never)
    expect(problems.join('\n')).toContain('record block')
  })

})
