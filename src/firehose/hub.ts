/**
 * FirehoseHub: the Durable Object that holds subscribeRepos WebSockets
 * (hibernation API, so idle relays cost nothing) and delivers events from the
 * durable `repo_seq` log in D1, in seq order, exactly once per socket.
 *
 * Nothing is delivered that did not commit: the hub only ever reads the log.
 * The Worker pokes it (`notify`) after each commit; an alarm re-checks the log
 * while sockets are open, in case a poke was lost.
 *
 * Per socket we keep `lastSeq` (the last event it was sent) and whether it is
 * `live`. A new socket replays from its cursor, a page at a time, until a read
 * reaches the end of the log, then turns live; the pump always reads from the
 * lowest live position and a socket only takes events right after its own
 * `lastSeq`, so there is no gap and no duplicate even while writes go on.
 * State survives hibernation in each socket's attachment; the constructor only
 * reloads it.
 *
 * Why memory stays bounded per subscriber. workerd's `WebSocket.send()` copies
 * the frame into an unbounded queue inside the runtime and returns; there is
 * no `bufferedAmount` (cloudflare/workerd#988), no callback, no error while
 * the peer does not read, and `close()` only queues a close frame behind the
 * data. So a subscriber that never reads keeps every byte it was sent in this
 * object's process until it disconnects (measured: a 100 MB queue stayed in
 * the workerd process until the client read it). The only proof the platform
 * gives that a socket's queue drained is hibernation itself: workerd does not
 * let an object go while any of its sockets still has outgoing messages
 * pending (measured the same way: a full queue kept the object alive for as
 * long as it lasted, an empty one let it hibernate after ~10 s idle). Hence:
 *
 * - each socket counts `unconfirmed`, the frame bytes sent since the last
 *   proof; the constructor, which only runs when the object was rebuilt,
 *   resets every socket's count to 0;
 * - a frame goes out only while the count stays within the budget
 *   (budget.ts: 2 MiB); otherwise the socket is *held*: nothing more is sent
 *   to it, not even live events, and it stays where it is in the log, so the
 *   hub holds nothing for it but the ≤ 2 MiB already queued in the runtime;
 * - an alarm looks at held sockets: after a rebuild (proof for all of them)
 *   they replay from their `lastSeq` and go live again, without gap or
 *   duplicate; one held for 45 s without proof is cut off with
 *   `ConsumerTooSlow`, as the reference PDS does with a full outbox (that
 *   stops it growing; what is already queued goes when the client does);
 * - the log is read in pages of at most 1 MiB of bodies (seq.ts), one page at
 *   a time across all replays, and subscribers replaying the same stretch
 *   share the page's frames, so reading is bounded too, whatever the log size.
 *
 * What a subscriber can make the hub hold is thus its budget, plus one page
 * for all of them, whatever the log's size or how long it stalls (measured:
 * five stalled subscribers with cursor=0 grow wrangler dev's workerd by
 * ~55-60 MiB, most of it local D1's JSON and the live writes, on a 20 MB and
 * on a 40 MB log alike, against 1.2 and 2.4 GiB before). The price: with no
 * delivery signal the hub cannot tell a fast relay from a stalled one, so a
 * relay sent more than the budget before the object next hibernates (a large
 * replay; a live stream while another subscriber is stalled and keeps the
 * object awake) pauses until that happens, ~12 s per budget (a lone relay
 * replayed 41 MB in 122 s with a 4 MiB budget, never cut off; ~4 min with
 * 2 MiB), and is cut off (it
 * reconnects from its cursor and loses nothing) if that does not happen
 * within 45 s.
 */
import { DurableObject } from 'cloudflare:workers'
import { openDb, type Db } from '../db/client'
import { getSeqBounds, readEventPageAfter } from '../db/seq'
import type { WorkerEnv } from '../env'
import { DEFAULT_SEND_BUDGET, fitsBudget, holdVerdict, parseCursorParam, type SendBudget } from './budget'
import { errorFrame, eventFrame, messageFrame } from './frames'

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

  constructor(ctx: DurableObjectState, env: WorkerEnv) {
    super(ctx, env)
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

  /** Called by the Worker after each commit (fire and forget). */
  async notify(): Promise<void> {
    this.resumeIdle()
    await this.pump()
  }

  override async alarm(): Promise<void> {
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

  private db(): Db {
    return openDb(this.env.DB)
  }

  private forget(ws: WebSocket): void {
    this.sockets.delete(ws)
    this.replaying.delete(ws)
  }

  private async startSubscriber(ws: WebSocket, state: SocketState, cursor: number | null): Promise<void> {
    // An alarm while it replays, so a replay an eviction cuts short is resumed.
    await this.scheduleAlarm(Date.now() + SAFETY_POLL_MS)
    const db = this.db()
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
  private async replay(ws: WebSocket, state: SocketState, db: Db = this.db()): Promise<void> {
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
    this.lastPage = { after, complete, frames: rows.map((row) => ({ seq: row.seq, frame: eventFrame(row.eventType, row.seq, row.event) })) }
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

  private async deliverNew(): Promise<void> {
    const db = this.db()
    for (;;) {
      const live = [...this.sockets].filter(([, s]) => s.live)
      if (live.length === 0) return
      const from = Math.min(...live.map(([, s]) => s.lastSeq))
      const { rows, complete } = await readEventPageAfter(db, from, PAGE, PAGE_BYTES)
      for (const row of rows) {
        const frame = eventFrame(row.eventType, row.seq, row.event)
        for (const [ws, state] of this.sockets) {
          // `rows` is every event after `from`, so a socket at or past `from`
          // gets the ones it lacks in order. A socket behind `from` (it went
          // live during the read) is skipped now and served by the next pass.
          // One out of budget stops being live and keeps its place.
          if (state.live && state.lastSeq >= from && state.lastSeq < row.seq) this.send(ws, state, frame, row.seq)
        }
        this.lastDelivered = row.seq
      }
      for (const [ws, state] of this.sockets) if (state.live) ws.serializeAttachment(state)
      if (complete) return
    }
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
