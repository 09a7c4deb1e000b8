/**
 * A subscribeRepos client for the in-runtime firehose tests: a WebSocket
 * through the real route (SELF.fetch) that decodes and keeps every frame, with
 * bounded waits. Every socket a test opens is closed by `closeAll` (afterEach),
 * which awaits the close event: vitest never exits with a socket left open.
 */
import { SELF } from 'cloudflare:test'
import { decodeAll } from '@atproto/lex-cbor'
import { expect } from 'vitest'

export interface Frame {
  header: { op: number; t?: string }
  body: Record<string, unknown>
  /** Bytes of the WebSocket message. */
  size: number
  /** The message as received. */
  bytes: Uint8Array
}

/** Sockets not yet closed by their test (closed after each test, even a failed one). */
const opened = new Set<Subscriber>()

/** A subscriber socket collecting decoded frames. */
export class Subscriber {
  readonly frames: Frame[] = []
  readonly closed: Promise<CloseEvent>

  constructor(readonly ws: WebSocket) {
    // The compatibility date makes Blob the default; frames are decoded synchronously, in order.
    ws.binaryType = 'arraybuffer'
    ws.addEventListener('message', (event) => {
      const bytes = new Uint8Array(event.data as ArrayBuffer)
      const [header, body] = [...decodeAll(bytes)] as [Frame['header'], Frame['body']]
      this.frames.push({ header, body, size: bytes.byteLength, bytes })
    })
    this.closed = new Promise((resolve) => ws.addEventListener('close', resolve))
    ws.accept()
    opened.add(this)
  }

  /** Connects with `?cursor=<cursor>`, or with no query when `cursor` is undefined. */
  static connect(cursor?: number | string): Promise<Subscriber> {
    return Subscriber.connectQuery(cursor === undefined ? '' : `?cursor=${cursor}`)
  }

  /** Connects with a raw query string (e.g. `?cursor=1&cursor=2`). */
  static async connectQuery(query: string): Promise<Subscriber> {
    const res = await SELF.fetch(`http://localhost:8787/xrpc/com.atproto.sync.subscribeRepos${query}`, { headers: { Upgrade: 'websocket' } })
    expect(res.status).toBe(101)
    return new Subscriber(res.webSocket!)
  }

  seqs(): number[] {
    return this.frames.map((f) => f.body.seq as number)
  }

  async waitFor(count: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.frames.length < count) {
      if (Date.now() > deadline) throw new Error(`waited for ${count} frames, got ${JSON.stringify(this.seqs())}`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }

  async close(): Promise<void> {
    opened.delete(this)
    try {
      this.ws.close(1000, 'done')
    } catch {
      // already closed by the server
    }
    await this.closed
  }
}

/** Closes every socket still open (afterEach). */
export const closeAll = async (): Promise<void> => {
  for (const sub of [...opened]) await sub.close()
}
