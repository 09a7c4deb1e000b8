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
 * `live`. A new socket replays from its cursor until a read comes back short,
 * then turns live; the pump always reads from the lowest live position and a
 * socket only takes events right after its own `lastSeq`, so there is no gap
 * and no duplicate even while writes go on. State survives hibernation in each
 * socket's attachment; the constructor only reloads it.
 */
import { DurableObject } from 'cloudflare:workers'
import { openDb, type Db } from '../db/client'
import { getSeqBounds, readEventsAfter, type SeqEventRow } from '../db/seq'
import type { WorkerEnv } from '../env'
import { errorFrame, eventFrame, messageFrame } from './frames'

interface SocketState {
  lastSeq: number
  live: boolean
}

/** Events read per D1 query (bounded: big commits are up to 2 MB each). */
const PAGE = 100
/** Re-check the log this often while relays are connected (a lost poke costs at most this delay). */
const SAFETY_POLL_MS = 60_000
/** A consumer this far behind (bytes queued) is cut off rather than let it hold memory. */
const MAX_BUFFERED_BYTES = 32 * 1024 * 1024

export class FirehoseHub extends DurableObject<WorkerEnv> {
  private sockets = new Map<WebSocket, SocketState>()
  /** Highest seq sent to any socket since wake (for the status page only). */
  private lastDelivered: number | null = null
  private pumping: Promise<void> | null = null
  private pumpAgain = false

  constructor(ctx: DurableObjectState, env: WorkerEnv) {
    super(ctx, env)
    for (const ws of ctx.getWebSockets()) {
      const state = ws.deserializeAttachment() as SocketState | null
      if (!state) continue
      this.sockets.set(ws, state)
    }
  }

  /** Accepts a subscribeRepos WebSocket; `cursor` is the query parameter, if any. */
  override async fetch(request: Request): Promise<Response> {
    const cursorParam = new URL(request.url).searchParams.get('cursor')
    const pair = new WebSocketPair()
    const [client, server] = [pair[0], pair[1]]
    this.ctx.acceptWebSocket(server)
    const state: SocketState = { lastSeq: 0, live: false }
    this.sockets.set(server, state)
    server.serializeAttachment(state)
    // Replay runs after the 101 is returned; the DO stays alive while it runs.
    void this.startSubscriber(server, state, cursorParam).catch((err) => this.drop(server, 1011, 'Internal error', err))
    return new Response(null, { status: 101, webSocket: client })
  }

  /** Called by the Worker after each commit (fire and forget). */
  async notify(): Promise<void> {
    await this.pump()
  }

  override async alarm(): Promise<void> {
    await this.pump()
    if ([...this.sockets.values()].some((s) => s.live)) await this.scheduleSafetyPoll()
  }

  /** Numbers for the status page: connected subscribers and the last delivered seq. */
  async stats(): Promise<{ subscribers: number; lastSeq: number | null }> {
    return { subscribers: this.sockets.size, lastSeq: this.lastDelivered }
  }

  override async webSocketMessage(): Promise<void> {
    // Subscribers have nothing to say; the spec has no client messages.
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    this.sockets.delete(ws)
    try {
      // 1005/1006 are reserved: they cannot be sent back.
      ws.close(code === 1005 || code === 1006 ? 1000 : code, 'closing')
    } catch {
      // already closed
    }
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    this.sockets.delete(ws)
  }

  private db(): Db {
    return openDb(this.env.DB)
  }

  private async startSubscriber(ws: WebSocket, state: SocketState, cursorParam: string | null): Promise<void> {
    const db = this.db()
    const { first, last } = await getSeqBounds(db)
    const head = last ?? 0
    if (cursorParam === null) {
      // No cursor: only what commits after now.
      state.lastSeq = head
    } else {
      const cursor = Number(cursorParam)
      if (!Number.isInteger(cursor) || cursor < 0) {
        return this.drop(ws, 1008, 'Invalid cursor', undefined, errorFrame('InvalidRequest', 'cursor must be a non-negative integer'))
      }
      if (cursor > head) {
        return this.drop(ws, 1008, 'Cursor in the future', undefined, errorFrame('FutureCursor', 'Cursor in the future.'))
      }
      if (first !== null && cursor < first - 1) {
        this.safeSend(ws, messageFrame('info', { name: 'OutdatedCursor', message: 'Requested cursor exceeded limit. Possibly missing events' }))
        state.lastSeq = first - 1
      } else {
        state.lastSeq = cursor
      }
    }
    await this.replay(ws, state, db)
  }

  /** Sends a socket everything after its lastSeq, then makes it live without a gap. */
  private async replay(ws: WebSocket, state: SocketState, db: Db): Promise<void> {
    for (;;) {
      const rows = await readEventsAfter(db, state.lastSeq, PAGE)
      if (!this.sockets.has(ws)) return
      this.sendRows(ws, state, rows)
      if (!this.sockets.has(ws)) return
      // Caught up with the log as of the read: live from here. Anything
      // committed since (even if other sockets already got it) reaches this
      // socket through the pump, which reads from the lowest live position.
      if (rows.length < PAGE) {
        state.live = true
        ws.serializeAttachment(state)
        await this.scheduleSafetyPoll()
        return this.pump()
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
      const rows = await readEventsAfter(db, from, PAGE)
      for (const row of rows) {
        const frame = eventFrame(row.eventType, row.seq, row.event)
        for (const [ws, state] of this.sockets) {
          // `rows` is every event after `from`, so a socket at or past `from`
          // gets the ones it lacks in order. A socket behind `from` (it went
          // live during the read) is skipped now and served by the next pass.
          if (state.live && state.lastSeq >= from && state.lastSeq < row.seq) {
            state.lastSeq = row.seq
            this.safeSend(ws, frame)
          }
        }
        this.lastDelivered = row.seq
      }
      for (const [ws, state] of this.sockets) if (state.live) ws.serializeAttachment(state)
      if (rows.length < PAGE) return
    }
  }

  private sendRows(ws: WebSocket, state: SocketState, rows: SeqEventRow[]): void {
    for (const row of rows) {
      state.lastSeq = row.seq
      if (!this.safeSend(ws, eventFrame(row.eventType, row.seq, row.event))) return
    }
    if (rows.length > 0) ws.serializeAttachment(state)
  }

  /** Sends, or cuts off a consumer that stopped reading. Returns false if the socket is gone. */
  private safeSend(ws: WebSocket, frame: Uint8Array): boolean {
    const buffered = (ws as WebSocket & { bufferedAmount?: number }).bufferedAmount
    if (typeof buffered === 'number' && buffered > MAX_BUFFERED_BYTES) {
      this.drop(ws, 1008, 'ConsumerTooSlow', undefined, errorFrame('ConsumerTooSlow', 'Stream consumer too slow'))
      return false
    }
    try {
      ws.send(frame)
      return true
    } catch (err) {
      this.drop(ws, 1011, 'Send failed', err)
      return false
    }
  }

  private drop(ws: WebSocket, code: number, reason: string, err?: unknown, frame?: Uint8Array): void {
    if (err) console.error(JSON.stringify({ firehose: 'drop', reason, error: String(err) }))
    this.sockets.delete(ws)
    try {
      if (frame) ws.send(frame)
      ws.close(code, reason)
    } catch {
      // already closed
    }
  }

  private async scheduleSafetyPoll(): Promise<void> {
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + SAFETY_POLL_MS)
  }
}

/** The one hub instance (a single-user PDS has one firehose). */
export const firehoseHub = (env: WorkerEnv): DurableObjectStub<FirehoseHub> =>
  (env.FIREHOSE as unknown as DurableObjectNamespace<FirehoseHub>).get(env.FIREHOSE.idFromName('firehose'))
