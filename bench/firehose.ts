/**
 * Firehose delivery latency (com.atproto.sync.subscribeRepos, `ws` clients):
 * from the moment a createRecord response is in the client's hands to the
 * moment each subscriber's matching `#commit` frame arrives.
 *
 * A frame's arrival is stamped first thing in the `message` handler and kept
 * raw; frames are decoded (header + body, two CBOR objects) and matched to
 * writes by commit rev only after the run, so decoding never delays the
 * stamps of the other subscribers sharing this event loop.
 */
import type { AtpAgent } from '@atproto/api'
import { decodeAll } from '@atproto/lex-cbor'
import WebSocket from 'ws'
import { isolateCpuPerWrite, PERF_V8_FLAGS, perfAvailable, removePerfMaps } from './isolate-cpu'
import { Report } from './report'
import { runStandalone } from './standalone'
import { both, groupsPer, interleave, type Measured, type Pair } from './rounds'
import { agentFor, type Server, type ServerName, startOurs, startReference } from './servers'
import { fmt, median, percentile, sum } from './stats'
import { createPost, sequentialWrites } from './writes'

interface Arrival {
  at: number
  bytes: Uint8Array
}

const WAIT_MS = 10_000

class Subscriber {
  readonly arrivals: Arrival[] = []
  readonly opened: Promise<void>
  /** Set when the socket closes (a live subscriber never should during a run). */
  closeCode: number | null = null

  constructor(
    readonly ws: WebSocket,
    onFrame: () => void,
  ) {
    this.opened = new Promise((ok, fail) => {
      ws.once('open', () => ok())
      ws.once('error', fail)
    })
    ws.on('error', () => {})
    ws.on('close', (code: number) => {
      this.closeCode = code
      onFrame()
    })
    ws.on('message', (data: Buffer) => {
      this.arrivals.push({ at: performance.now(), bytes: data })
      onFrame()
    })
  }
}

/** `n` subscribers to one server, all connected and live. */
export class Fanout {
  readonly subs: Subscriber[] = []
  private waiters = new Set<() => void>()

  private constructor(readonly url: string) {}

  static async open(url: string, n: number): Promise<Fanout> {
    const fanout = new Fanout(url)
    const wsUrl = `${url.replace(/^http/, 'ws')}/xrpc/com.atproto.sync.subscribeRepos`
    for (let i = 0; i < n; i++) {
      // As a relay dials: indigo's relay uses gorilla's websocket.Dialer without EnableCompression, so
      // it never offers permessage-deflate (ws would offer it; the reference declines it, wrangler dev's
      // entry Worker accepts it and then compresses every frame for every socket).
      const ws = new WebSocket(wsUrl, { perMessageDeflate: false })
      fanout.subs.push(new Subscriber(ws, () => fanout.wake()))
    }
    await Promise.all(fanout.subs.map((s) => s.opened))
    return fanout
  }

  private wake(): void {
    for (const w of this.waiters) w()
  }

  counts(): number[] {
    return this.subs.map((s) => s.arrivals.length)
  }

  /** Throws if a subscriber's socket has closed: waiting for its frames would only time out. */
  assertOpen(): void {
    const closed = this.subs.filter((s) => s.closeCode !== null)
    if (closed.length > 0) {
      throw new Error(`${closed.length} firehose socket(s) to ${this.url} closed (code ${closed[0].closeCode}) during the run`)
    }
  }

  /** Resolves when every subscriber has more frames than in `before` (false on timeout or a closed socket). */
  waitForMore(before: number[], ms = WAIT_MS): Promise<boolean> {
    const done = () => this.subs.every((s, i) => s.arrivals.length > before[i] || s.closeCode !== null)
    if (done()) return Promise.resolve(true)
    return new Promise((ok) => {
      const timer = setTimeout(() => {
        this.waiters.delete(check)
        ok(false)
      }, ms)
      const check = () => {
        if (!done()) return
        clearTimeout(timer)
        this.waiters.delete(check)
        ok(true)
      }
      this.waiters.add(check)
    })
  }

  /** Writes until every subscriber has seen a frame (a socket without a cursor goes live asynchronously). */
  async warmUp(agent: AtpAgent, did: string): Promise<void> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const before = this.counts()
      await createPost(agent, did)
      const more = await this.waitForMore(before, 3_000)
      this.assertOpen()
      if (more) return
    }
    throw new Error(`firehose subscribers of ${this.url} never went live`)
  }

  close(): void {
    for (const s of this.subs) s.closeCode ??= 1000
    for (const s of this.subs) s.ws.terminate()
  }

  /** Arrival time of each subscriber's #commit frame, by commit rev. */
  commitArrivals(): Map<string, number>[] {
    return this.subs.map((s) => {
      const byRev = new Map<string, number>()
      for (const a of s.arrivals) {
        const [header, body] = [...decodeAll(a.bytes)] as [{ op: number; t?: string }, { rev?: string }]
        if (header.op === 1 && header.t === '#commit' && typeof body.rev === 'string' && !byRev.has(body.rev)) {
          byRev.set(body.rev, a.at)
        }
      }
      return byRev
    })
  }
}

export interface DeliveryRun {
  /** Every (write, subscriber) delay after the response, ms (negative: the frame beat the response). */
  delays: number[]
  /** Every (write, subscriber) delay after the request was sent, ms. */
  sentDelays: number[]
  /** Per write, the delay until the last subscriber had it. */
  lastDelays: number[]
  /** (write, subscriber) pairs whose frame never came. */
  missing: number
}

/**
 * `n` sequential createRecords; after each, waits until every subscriber got
 * a frame (so deliveries do not overlap the next write).
 */
export const measureDelivery = async (fanout: Fanout, agent: AtpAgent, did: string, n: number): Promise<DeliveryRun> => {
  const writes: { rev: string; respondedAt: number; ms: number }[] = []
  for (let i = 0; i < n; i++) {
    const before = fanout.counts()
    writes.push(await createPost(agent, did))
    await fanout.waitForMore(before)
    fanout.assertOpen()
  }
  const arrivals = fanout.commitArrivals()
  const run: DeliveryRun = { delays: [], sentDelays: [], lastDelays: [], missing: 0 }
  for (const w of writes) {
    let last = Number.NEGATIVE_INFINITY
    for (const byRev of arrivals) {
      const at = byRev.get(w.rev)
      if (at === undefined) {
        run.missing++
        continue
      }
      run.delays.push(at - w.respondedAt)
      run.sentDelays.push(at - (w.respondedAt - w.ms))
      last = Math.max(last, at - w.respondedAt)
    }
    if (Number.isFinite(last)) run.lastDelays.push(last)
  }
  return run
}

export interface FirehosePhaseConfig {
  /** Writes measured per subscriber count (in blocks of `fhBlock`, interleaved between the servers). */
  fhWrites: number
  fhBlock: number
  /** The large subscriber count (the small one is 1). */
  fanout: number
  /** Ours was started with PERF_V8_FLAGS: also sample our isolate's JavaScript per write with perf (bench/isolate-cpu.ts). */
  sampleIsolate?: boolean
}

/** Writes sampled with perf per subscriber count (after the /proc rounds, so perf never runs during them). */
const ISOLATE_WRITES = 40

const groupText = (groups: Record<string, number>): string =>
  Object.entries(groups)
    .map(([g, v]) => `${g} ${fmt(v)}`)
    .join(', ')

const cpuPerWrite = (runs: Measured<unknown>[], block: number): number => median(runs.map((r) => r.cpu / block))

/**
 * Phase 6: server CPU per write with 0, 1 and `fanout` subscribers, and the
 * delivery delays with 1 and `fanout`. What a subscriber costs is the
 * difference to the 0-subscriber row, measured in the same phase.
 */
export const firehosePhase = async (
  report: Report,
  pair: Pair<Server>,
  agents: Pair<AtpAgent>,
  cfg: FirehosePhaseConfig,
  progress: (msg: string) => void,
): Promise<void> => {
  const rounds = Math.ceil(cfg.fhWrites / cfg.fhBlock)
  const isolateNotes: string[] = []
  /** Our isolate's JavaScript per write (Worker and hub alike) with `subscribers` connected, sampled with perf. */
  const sampleIsolate = async (subscribers: number): Promise<void> => {
    if (!cfg.sampleIsolate) return
    const cpu = await isolateCpuPerWrite(pair.ours, agents.ours, 1, ISOLATE_WRITES)
    report.add(`our isolate's JavaScript CPU per write, ${subscribers} firehose subscriber(s) (perf)`, 'ms', median(cpu.oursPerWrite), Number.NaN)
    isolateNotes.push(`${subscribers}: ${Object.entries(cpu.byOwner).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}`)
  }
  progress(`phase 6: ${cfg.fhWrites} writes each without firehose subscribers`)
  const none = await interleave(pair, rounds, (s) => sequentialWrites(agents[s.name], s.did, cfg.fhBlock))
  report.add('server CPU per write, 0 firehose subscribers', 'ms', cpuPerWrite(none.ours, cfg.fhBlock), cpuPerWrite(none.ref, cfg.fhBlock), 'lower')
  const cpuNotes = [`0 subscribers: ours ${groupText(groupsPer(none.ours, () => cfg.fhBlock))}; reference ${fmt(cpuPerWrite(none.ref, cfg.fhBlock))}`]
  await sampleIsolate(0)

  // Delays after the response can be negative (the frame came first): no ratio for those.
  const rows: [string, (r: DeliveryRun) => number[], 'lower' | 'no-ratio'][] = [
    ['response to frame', (r) => r.delays, 'no-ratio'],
    ['request sent to frame', (r) => r.sentDelays, 'lower'],
    ['response to last subscriber', (r) => r.lastDelays, 'no-ratio'],
  ]
  for (const subscribers of [1, cfg.fanout]) {
    progress(`phase 6: firehose with ${subscribers} subscriber(s), ${cfg.fhWrites} writes each`)
    const fanouts = await both((name) => Fanout.open(pair[name].url, subscribers))
    try {
      await both((name) => fanouts[name].warmUp(agents[name], pair[name].did))
      const runs = await interleave(pair, rounds, (s) => measureDelivery(fanouts[s.name], agents[s.name], s.did, cfg.fhBlock))
      const merged = (name: ServerName): DeliveryRun => ({
        delays: runs[name].flatMap((r) => r.result.delays),
        sentDelays: runs[name].flatMap((r) => r.result.sentDelays),
        lastDelays: runs[name].flatMap((r) => r.result.lastDelays),
        missing: sum(runs[name].map((r) => r.result.missing)),
      })
      const ours = merged('ours')
      const ref = merged('ref')
      report.add(`server CPU per write, ${subscribers} firehose subscriber(s)`, 'ms', cpuPerWrite(runs.ours, cfg.fhBlock), cpuPerWrite(runs.ref, cfg.fhBlock), 'lower')
      for (const [what, pick, better] of subscribers === 1 ? rows.slice(0, 2) : rows) {
        for (const p of [50, 99]) {
          report.add(`firehose ${subscribers} sub: ${what} p${p}`, 'ms', percentile(pick(ours), p), percentile(pick(ref), p), better)
        }
      }
      report.note(
        `Firehose, ${subscribers} subscriber(s): ${ours.delays.length} deliveries measured on ours (${ours.missing} missing), ` +
          `${ref.delays.length} on the reference (${ref.missing} missing). A negative delay: the frame arrived before the createRecord response.`,
      )
      cpuNotes.push(`${subscribers}: ours ${groupText(groupsPer(runs.ours, () => cfg.fhBlock))}; reference ${fmt(cpuPerWrite(runs.ref, cfg.fhBlock))}`)
      await sampleIsolate(subscribers)
      fanouts.ours.assertOpen()
    } finally {
      fanouts.ours.close()
      fanouts.ref.close()
    }
  }
  report.note(
    `Server CPU per write (ms) by process and subscriber count, ${cfg.fhWrites} writes each in blocks of ${cfg.fhBlock}: ${cpuNotes.join('. ')}. ` +
      "The table charges ours its workerd processes (user worker + wrangler's entry proxy, which also relays every WebSocket frame locally), not wrangler's node.",
  )
  if (isolateNotes.length > 0) {
    report.note(
      `Our isolate's JavaScript (the Worker and the FirehoseHub alike) per write, sampled with perf on CPU time over ${ISOLATE_WRITES} writes per subscriber count after the rounds above ` +
        `(bench/isolate-cpu.ts); the user-worker process per write by owner (ms), by subscriber count: ${isolateNotes.join('. ')}. ` +
        "What subscribers add beyond our JavaScript is the runtime's (owner runtime: WebSocket framing and the pipes between the hub, the Worker and wrangler's entry Worker). " +
        'Each figure is one sample of that many writes: from run to run it moves by about 1 ms either way.',
    )
  }
}

/** Standalone (`bun bench/run.ts --only firehose`): phase 6 alone on a fresh pair, into its own section of bench/results.md. */
export const runFirehoseStandalone = (cfg: FirehosePhaseConfig, quick: boolean): Promise<void> =>
  runStandalone(
    { key: 'firehose', title: 'Firehose, phase 6 (standalone run)', run: `bun bench/run.ts --only firehose${quick ? ' --quick' : ''}` },
    async ({ report, progress, track }) => {
      // V8's map of compiled code, so perf samples name our scripts (bench/isolate-cpu.ts).
      const sampleIsolate = perfAvailable()
      if (sampleIsolate) Object.assign(process.env, PERF_V8_FLAGS)
      let ourPids: number[] = []
      try {
        const pair = await both(async (name) => {
          const server = await (name === 'ours' ? startOurs() : startReference())
          track(server)
          return server
        })
        for (const key of Object.keys(PERF_V8_FLAGS)) delete process.env[key]
        ourPids = pair.ours.pids()
        const agents = await both((name) => agentFor(pair[name]))
        await both((name) => sequentialWrites(agents[name], pair[name].did, 20))
        await firehosePhase(report, pair, agents, { ...cfg, sampleIsolate }, progress)
      } finally {
        removePerfMaps(ourPids)
      }
    },
  )
