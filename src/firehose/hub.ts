/**
 * FirehoseHub: the Durable Object that holds subscribeRepos WebSockets
 * (hibernation API, so idle relays cost nothing) and delivers events from the
 * durable `repo_seq` log in D1, in seq order, exactly once per socket.
 *
 * Nothing is delivered that did not commit. After each commit the Worker
 * hands the hub the commit's events as stored, with the seqs D1 gave them
 * (`notify`), and live subscribers are served from that: each event is framed
 * once (frames.ts) and the same bytes go to every live socket, with no D1
 * read. The log stays the source of truth: a new socket replays from it, and
 * the hub reads it whenever memory cannot prove a socket has everything (a
 * notification lost or late, so a socket is behind a seq the hub has heard
 * of; a rebuilt hub; a notification without events, from the identity and
 * account methods; the alarm, which re-checks the log while sockets are open).
 *
 * Per socket we keep `lastSeq` (the last event it was sent) and whether it is
 * `live`. A new socket replays from its cursor, a page at a time, until a read
 * reaches the end of the log, then turns live. A socket only ever takes the
 * event right after its own `lastSeq`: from memory, the event numbered
 * `lastSeq + 1`; from the log, the rows of a read that began at or before
 * `lastSeq`. So there is no gap and no duplicate, in whatever order
 * notifications arrive, even while writes go on. State survives hibernation
 * in each socket's attachment, written whenever it changes (a few µs per
 * socket, measured; a debounce would make a socket's position stale if the
 * object is evicted first); the constructor only reloads it.
 *
 * Why memory stays bounded per subscriber, and what that costs a fast relay:
 * see budget.ts, which holds the rules.
 */
import { DurableObject } from 'cloudflare:workers'
import { openDb, type Db } from '../db/client'
import { getSeqBounds, readEventPageAfter } from '../db/seq'
import type { WorkerEnv } from '../env'
import { DEFAULT_SEND_BUDGET, fitsBudget, holdVerdict, parseCursorParam, type SendBudget } from './budget'
import type { CommittedEvent } from './events'
import { errorFrame, eventFrame, messageFrame } from './frames'
import { RecentEvents } from './recent'

interface SocketState {
  lastSeq: number
  live: boolean
  /** Frame bytes sent since the last proof that the runtime flushed this socket's queue. */
  unconfirmed: number
  /** When the socket ran out of budget (epoch ms); null while it is being sent to. */
  heldAt: number | null
}

/** Events read per D1 query at most. */
const PAGE = 100
/** Event bytes read per D1 query at most (past the first event; big commits are up to ~2 MB). */
const PAGE_BYTES = 1024 * 1024
/** Re-check the log this often while relays are connected (a lost poke costs at most this delay). */
const SAFETY_POLL_MS = 60_000
/** Bodies of notified events the hub keeps for live sockets that lack them, at most (the newest always stays). */
const RECENT_BYTES = 1024 * 1024

type SendResult = 'sent' | 'held' | 'gone'

/** Replay frames for the events after `after`; `complete` if they reached the end of the log when read. */
interface Page {
  after: number
  complete: boolean
  frames: { seq: number; frame: Uint8Array }[]
}

export class FirehoseHub extends DurableObject<WorkerEnv> {
  /** The send budget; tests shrink it (it is per instance, so a rebuilt object has the default). */
  limits: SendBudget = DEFAULT_SEND_BUDGET
  private sockets = new Map<WebSocket, SocketState>()
  /** Sockets with a replay running in this instance (a replay cut short by eviction is restarted). */
  private replaying = new Set<WebSocket>()
  /** Highest seq sent to any socket since wake (for the status page only). */
  private lastDelivered: number | null = null
  private pumping: Promise<void> | null = null
  private pumpAgain = false
  /** The end of the queue of replay pages (see inTurn). */
  private turn: Promise<void> = Promise.resolve()
  /** The last replay page read, kept while replays run (at most one page). */
  private lastPage: Page | null = null
  /** Notified events a live socket may still take, framed once (recent.ts). */
  private recent = new RecentEvents(RECENT_BYTES, (e) => this.encode(e.type, e.seq, e.body))
  /** The highest seq the hub knows to be in the log (notified or read); a live socket behind it needs the log if memory lacks its next event. */
  private newest = 0
  /** Set by an alarm or a notification without events: the next pass reads the log to its end. */
  private mustRead = false
  /** Event frames encoded by this instance (replay pages and live events; for tests: one per event, whatever the subscriber count). */
  framesEncoded = 0
  /** This instance's D1 client; its `stats` count the log reads. */
  readonly log: Db

  constructor(ctx: DurableObjectState, env: WorkerEnv) {
    super(ctx, env)
    this.log = openDb(env.DB)
    for (const ws of ctx.getWebSockets()) {
      const state = ws.deserializeAttachment() as SocketState | null
      // A socket we already closed (its close frame may still be queued) is done.
      if (!state || ws.readyState !== WebSocket.OPEN) continue
      // Being rebuilt proves the runtime had flushed every socket's queue (see above).
      const reloaded: SocketState = { ...state, unconfirmed: 0, heldAt: state.heldAt ?? null }
      ws.serializeAttachment(reloaded)
      this.sockets.set(ws, reloaded)
    }
  }

  /** Accepts a subscribeRepos WebSocket; the `cursor` query parameter, if any, says where to start. */
  override async fetch(request: Request): Promise<Response> {
    const cursor = parseCursorParam(new URL(request.url).searchParams.getAll('cursor'))
    const pair = new WebSocketPair()
    const [client, server] = [pair[0], pair[1]]
    this.ctx.acceptWebSocket(server)
    const state: SocketState = { lastSeq: 0, live: false, unconfirmed: 0, heldAt: null }
    this.sockets.set(server, state)
    server.serializeAttachment(state)
    if (!cursor.ok) {
      // As the reference: an error frame, then close with the error name (1008, policy).
      this.drop(server, 1008, 'InvalidRequest', undefined, errorFrame('InvalidRequest', cursor.message))
    } else {
      // Replay runs after the 101 is returned; the DO stays alive while it runs.
      this.replaying.add(server)
      void this.startSubscriber(server, state, cursor.cursor)
        .catch((err) => this.drop(server, 1011, 'Internal error', err))
        .finally(() => this.replaying.delete(server))
    }
    return new Response(null, { status: 101, webSocket: client })
  }

  /**
   * Called by the Worker after each commit (fire and forget) with the
   * commit's events; without events (a change written outside the commit
   * path) the hub reads the log instead.
   */
  async notify(events?: CommittedEvent[]): Promise<void> {
    if (events) {
      for (const event of events) if (event.seq > this.newest) this.newest = event.seq
      this.recent.add(events, this.liveFloor())
    } else {
      this.mustRead = true
    }
    this.resumeIdle()
    await this.pump()
  }

  override async alarm(): Promise<void> {
    this.mustRead = true
    this.resumeIdle()
    await this.pump()
    const states = [...this.sockets.values()]
    if (states.some((s) => s.heldAt !== null)) await this.scheduleAlarm(Date.now() + this.limits.holdCheckMs)
    else if (states.some((s) => s.live) || this.replaying.size > 0) await this.scheduleAlarm(Date.now() + SAFETY_POLL_MS)
  }

  /** Numbers for the status page: connected subscribers and the last delivered seq. */
  async stats(): Promise<{ subscribers: number; lastSeq: number | null }> {
    return { subscribers: this.sockets.size, lastSeq: this.lastDelivered }
  }

  override async webSocketMessage(): Promise<void> {
    // Subscribers have nothing to say; the spec has no client messages.
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    this.forget(ws)
    try {
      // 1005/1006 are reserved: they cannot be sent back.
      ws.close(code === 1005 || code === 1006 ? 1000 : code, 'closing')
    } catch {
      // already closed
    }
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    this.forget(ws)
  }

  private forget(ws: WebSocket): void {
    this.sockets.delete(ws)
    this.replaying.delete(ws)
  }

  private async startSubscriber(ws: WebSocket, state: SocketState, cursor: number | null): Promise<void> {
    // An alarm while it replays, so a replay an eviction cuts short is resumed.
    await this.scheduleAlarm(Date.now() + SAFETY_POLL_MS)
    const db = this.log
    const { first, last } = await getSeqBounds(db)
    const head = last ?? 0
    if (cursor === null) {
      // No cursor: only what commits after now.
      state.lastSeq = head
    } else if (cursor > head) {
      return this.drop(ws, 1008, 'FutureCursor', undefined, errorFrame('FutureCursor', 'Cursor in the future.'))
    } else if (first !== null && cursor < first - 1) {
      const info = messageFrame('info', { name: 'OutdatedCursor', message: 'Requested cursor exceeded limit. Possibly missing events' })
      if (this.send(ws, state, info) !== 'sent') return
      state.lastSeq = first - 1
    } else {
      state.lastSeq = cursor
    }
    await this.replay(ws, state, db)
  }

  /**
   * Sends a socket everything after its lastSeq, then makes it live without a
   * gap; stops where it is if it runs out of budget. Callers mark the socket
   * in `replaying` for the duration, so no second replay starts meanwhile.
   */
  private async replay(ws: WebSocket, state: SocketState, db: Db = this.log): Promise<void> {
    try {
      for (;;) {
        const outcome = await this.inTurn(() => this.replayPage(ws, state, db))
        if (outcome === 'stopped') return
        // Caught up with the log as of the read: live from here. Anything
        // committed since (even if other sockets already got it) reaches this
        // socket through the pump, which reads from the lowest live position.
        if (outcome === 'caught-up') {
          state.live = true
          ws.serializeAttachment(state)
          return this.pump()
        }
      }
    } finally {
      if ([...this.replaying].every((other) => other === ws)) this.lastPage = null
    }
  }

  private async replayPage(ws: WebSocket, state: SocketState, db: Db): Promise<'more' | 'caught-up' | 'stopped'> {
    // Subscribers replaying the same stretch of the log (several connecting
    // with cursor=0) share one read and one set of frames.
    const page = this.lastPage?.after === state.lastSeq ? this.lastPage : await this.readPage(db, state.lastSeq)
    if (!this.sockets.has(ws)) return 'stopped'
    for (const { seq, frame } of page.frames) {
      if (this.send(ws, state, frame, seq) !== 'sent') return 'stopped'
    }
    ws.serializeAttachment(state)
    return page.complete ? 'caught-up' : 'more'
  }

  private async readPage(db: Db, after: number): Promise<Page> {
    const { rows, complete } = await readEventPageAfter(db, after, PAGE, PAGE_BYTES)
    this.lastPage = { after, complete, frames: rows.map((row) => ({ seq: row.seq, frame: this.encode(row.eventType, row.seq, row.event) })) }
    return this.lastPage
  }

  /**
   * Runs replay pages one at a time across all sockets, so however many
   * subscribers replay at once the hub reads and frames one page at a time.
   */
  private async inTurn<T>(work: () => Promise<T>): Promise<T> {
    const previous = this.turn
    let release = (): void => {}
    this.turn = new Promise<void>((resolve) => {
      release = resolve
    })
    await previous
    try {
      return await work()
    } finally {
      release()
    }
  }

  /** Restarts sockets that are neither live nor replaying: held ones with fresh proof, or a replay an eviction cut short; cuts off those held too long. */
  private resumeIdle(): void {
    const now = Date.now()
    for (const [ws, state] of this.sockets) {
      if (state.live || this.replaying.has(ws)) continue
      const verdict = state.heldAt === null ? 'resume' : holdVerdict(state.unconfirmed, state.heldAt, now, this.limits)
      if (verdict === 'cut-off') {
        this.drop(ws, 1008, 'ConsumerTooSlow', undefined, errorFrame('ConsumerTooSlow', 'Stream consumer too slow'))
      } else if (verdict === 'resume') {
        state.heldAt = null
        ws.serializeAttachment(state)
        this.replaying.add(ws)
        void this.replay(ws, state)
          .catch((err) => this.drop(ws, 1011, 'Internal error', err))
          .finally(() => this.replaying.delete(ws))
      }
    }
  }

  private pump(): Promise<void> {
    if (this.pumping) {
      this.pumpAgain = true
      return this.pumping
    }
    this.pumping = (async () => {
      try {
        do {
          this.pumpAgain = false
          await this.deliverNew()
        } while (this.pumpAgain)
      } finally {
        this.pumping = null
      }
    })()
    return this.pumping
  }

  /**
   * Brings every live socket up to date: from memory where it holds the next
   * event of each, from the log where it cannot prove that (or was asked to
   * read it), until neither has more.
   */
  private async deliverNew(): Promise<void> {
    for (;;) {
      const live = [...this.sockets].filter(([, s]) => s.live)
      for (const [ws, state] of live) this.deliverFromMemory(ws, state)
      const stillLive = live.filter(([, s]) => s.live)
      const behind = stillLive.filter(([, s]) => s.lastSeq < this.newest)
      if (stillLive.length === 0 || (!this.mustRead && behind.length === 0)) {
        if (stillLive.length === 0) this.mustRead = false
        this.recent.trim(this.liveFloor())
        return
      }
      await this.deliverFromLog(Math.min(...(this.mustRead ? stillLive : behind).map(([, s]) => s.lastSeq)))
    }
  }

  /** Sends a live socket the events it lacks that memory holds, in order. */
  private deliverFromMemory(ws: WebSocket, state: SocketState): void {
    let sent = false
    for (let frame = this.recent.frame(state.lastSeq + 1); frame && state.live; frame = this.recent.frame(state.lastSeq + 1)) {
      if (this.send(ws, state, frame, state.lastSeq + 1) !== 'sent') break
      sent = true
    }
    if (!sent) return
    if (state.live) ws.serializeAttachment(state)
    if (state.lastSeq > (this.lastDelivered ?? 0)) this.lastDelivered = state.lastSeq
  }

  /** One page of the log after `from`, to each live socket at or past `from` (a page holds every event after it, in order). */
  private async deliverFromLog(from: number): Promise<void> {
    const known = this.newest
    const { rows, complete } = await readEventPageAfter(this.log, from, PAGE, PAGE_BYTES)
    const touched = new Set<WebSocket>()
    for (const row of rows) {
      const frame = this.recent.frame(row.seq) ?? this.encode(row.eventType, row.seq, row.event)
      for (const [ws, state] of this.sockets) {
        // A socket behind `from` (it went live during the read) is served by the next pass.
        if (state.live && state.lastSeq >= from && state.lastSeq < row.seq && this.send(ws, state, frame, row.seq) === 'sent') touched.add(ws)
      }
      this.lastDelivered = row.seq
    }
    for (const ws of touched) {
      const state = this.sockets.get(ws)
      if (state?.live) ws.serializeAttachment(state)
    }
    const head = rows.at(-1)?.seq ?? from
    if (head > this.newest) this.newest = head
    if (complete) {
      this.mustRead = false
      // The log is the truth: what the hub believed before the read and the log does not hold (an
      // event pruned meanwhile, a seq never written) is forgotten, so no socket waits for it.
      if (this.newest === known && head < known) this.newest = head
    }
  }

  /** The lowest position among live sockets (Infinity with none): every event at or below it was taken by all of them. */
  private liveFloor(): number {
    let floor = Number.POSITIVE_INFINITY
    for (const state of this.sockets.values()) if (state.live && state.lastSeq < floor) floor = state.lastSeq
    return floor
  }

  /** The frame of a stored event; counted, so tests can check one encoding per event. */
  private encode(type: string, seq: number, body: Uint8Array): Uint8Array {
    this.framesEncoded++
    return eventFrame(type, seq, body)
  }

  /**
   * Sends one frame if the socket's budget allows (advancing lastSeq to `seq`
   * when given); otherwise holds the socket where it is.
   */
  private send(ws: WebSocket, state: SocketState, frame: Uint8Array, seq?: number): SendResult {
    if (!fitsBudget(state.unconfirmed, frame.byteLength, this.limits)) {
      this.hold(ws, state)
      return 'held'
    }
    try {
      ws.send(frame)
    } catch (err) {
      this.drop(ws, 1011, 'Send failed', err)
      return 'gone'
    }
    state.unconfirmed += frame.byteLength
    if (seq !== undefined) state.lastSeq = seq
    return 'sent'
  }

  private hold(ws: WebSocket, state: SocketState): void {
    state.live = false
    state.heldAt = Date.now()
    ws.serializeAttachment(state)
    void this.scheduleAlarm(state.heldAt + this.limits.holdCheckMs)
  }

  private drop(ws: WebSocket, code: number, reason: string, err?: unknown, frame?: Uint8Array): void {
    if (err) console.error(JSON.stringify({ firehose: 'drop', reason, error: String(err) }))
    this.forget(ws)
    try {
      if (frame) ws.send(frame)
      ws.close(code, reason)
    } catch {
      // already closed
    }
  }

  /** Makes sure the alarm fires by `at` (an earlier one is kept). */
  private async scheduleAlarm(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm()
    if (current === null || current > at) await this.ctx.storage.setAlarm(at)
  }
}

/** The one hub instance (a single-user PDS has one firehose). */
export const firehoseHub = (env: WorkerEnv): DurableObjectStub<FirehoseHub> =>
  (env.FIREHOSE as unknown as DurableObjectNamespace<FirehoseHub>).get(env.FIREHOSE.idFromName('firehose'))
