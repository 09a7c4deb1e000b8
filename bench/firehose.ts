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
import { createPost } from './writes'

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
      fanout.subs.push(new Subscriber(new WebSocket(wsUrl), () => fanout.wake()))
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
