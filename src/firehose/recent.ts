/**
 * The events the Worker handed the firehose hub (hub.ts) that a live
 * subscriber may still need: each framed once, on first use, so every socket
 * is sent the same bytes. Bounded: what every live socket already has is
 * dropped, and past `maxBytes` of bodies the oldest go (a socket that needed
 * one reads the log instead). No I/O; tested in test/firehose/recent.test.ts.
 */
import type { CommittedEvent } from './events'

export class RecentEvents {
  private entries = new Map<number, { event: CommittedEvent; frame: Uint8Array | null }>()
  private bytes = 0

  constructor(
    private readonly maxBytes: number,
    private readonly encode: (event: CommittedEvent) => Uint8Array,
  ) {}

  /** Keeps the events above `floor`, the lowest position of the live sockets (those at or below it they all have). */
  add(events: CommittedEvent[], floor: number): void {
    for (const event of events) {
      if (event.seq <= floor || this.entries.has(event.seq)) continue
      this.entries.set(event.seq, { event, frame: null })
      this.bytes += event.body.byteLength
    }
    this.trim(floor)
  }

  /** The frame of event `seq` if it is held (encoded the first time it is asked for). */
  frame(seq: number): Uint8Array | null {
    const entry = this.entries.get(seq)
    if (!entry) return null
    entry.frame ??= this.encode(entry.event)
    return entry.frame
  }

  /** Drops the events at or below `floor`, then the oldest while over the byte bound; the newest always stays. */
  trim(floor: number): void {
    for (const [seq, entry] of this.entries) {
      if (seq > floor && (this.bytes <= this.maxBytes || this.entries.size === 1)) continue
      this.entries.delete(seq)
      this.bytes -= entry.event.body.byteLength
    }
  }

  /** Events held (for tests). */
  get size(): number {
    return this.entries.size
  }
}
