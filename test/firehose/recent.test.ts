/**
 * RecentEvents (src/firehose/recent.ts): the notified events the hub keeps
 * for live sockets: framed once however often asked, nothing kept that every
 * live socket has, and bounded in bytes with the newest always kept.
 */
import { describe, expect, it } from 'vitest'
import type { CommittedEvent } from '../../src/firehose/events'
import { RecentEvents } from '../../src/firehose/recent'

const event = (seq: number, bytes = 10): CommittedEvent => ({ seq, type: 'commit', body: new Uint8Array(bytes) })

const recent = (maxBytes: number) => {
  const encoded: number[] = []
  const events = new RecentEvents(maxBytes, (e) => {
    encoded.push(e.seq)
    return Uint8Array.of(e.seq)
  })
  return { events, encoded }
}

describe('RecentEvents', () => {
  it('frames an event once, on first use, and gives every caller the same bytes', () => {
    const { events, encoded } = recent(1000)
    events.add([event(5), event(6)], 4)
    expect(encoded).toEqual([])
    const first = events.frame(5)
    expect(events.frame(5)).toBe(first)
    expect(events.frame(7)).toBeNull()
    expect(encoded).toEqual([5])
  })

  it('keeps nothing every live socket already has, nor anything with no live socket', () => {
    const { events } = recent(1000)
    events.add([event(3), event(4), event(5)], 4)
    expect(events.size).toBe(1)
    events.add([event(5)], 4)
    expect(events.size).toBe(1)
    events.trim(5)
    expect(events.size).toBe(0)
    events.add([event(6)], Number.POSITIVE_INFINITY)
    expect(events.size).toBe(0)
  })

  it('drops the oldest past the byte bound, but never the newest', () => {
    const { events } = recent(25)
    events.add([event(1), event(2), event(3)], 0)
    expect([1, 2, 3].map((seq) => events.frame(seq) !== null)).toEqual([false, true, true])
    events.add([event(4, 100)], 0)
    expect([2, 3, 4].map((seq) => events.frame(seq) !== null)).toEqual([false, false, true])
  })
})
