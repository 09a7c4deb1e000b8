/**
 * Event-stream frames (src/firehose/frames.ts) and stored event bodies
 * (src/firehose/events.ts): a frame is a DAG-CBOR header followed by a
 * DAG-CBOR body (atproto "Event Stream" spec), decoded here with
 * @atproto/lex-cbor's decodeAll exactly as a relay would split it.
 */
import { decode, decodeAll, encode } from '@atproto/lex-cbor'
import { cidForCbor, type Cid } from '@atproto/lex-data'
import { BlockMap, readCarWithRoot } from '@atproto/repo'
import { describe, expect, it } from 'vitest'
import { encodeAccountEvent, encodeCommitEvent, encodeIdentityEvent } from '../../src/firehose/events'
import { errorFrame, eventFrame, messageFrame } from '../../src/firehose/frames'

const parts = (frame: Uint8Array): Record<string, unknown>[] => [...decodeAll(frame)] as Record<string, unknown>[]

describe('frames', () => {
  it('eventFrame: {op: 1, t: "#type"} then the stored body with its seq', () => {
    const stored = encodeIdentityEvent({ did: 'did:web:example.com', handle: 'alice.test', time: '2026-11-23T00:00:00.000Z' })
    const frame = eventFrame('identity', 42, stored)
    const [header, body, ...rest] = parts(frame)
    expect(rest).toEqual([])
    expect(header).toEqual({ op: 1, t: '#identity' })
    expect(body).toEqual({ did: 'did:web:example.com', handle: 'alice.test', time: '2026-11-23T00:00:00.000Z', seq: 42 })
    // The header comes first, byte for byte.
    expect([...frame.subarray(0, encode({ op: 1, t: '#identity' }).byteLength)]).toEqual([...encode({ op: 1, t: '#identity' })])
  })

  it('messageFrame and errorFrame', () => {
    expect(parts(messageFrame('info', { name: 'OutdatedCursor', message: 'old' }))).toEqual([
      { op: 1, t: '#info' },
      { name: 'OutdatedCursor', message: 'old' },
    ])
    expect(parts(errorFrame('FutureCursor', 'Cursor in the future.'))).toEqual([{ op: -1 }, { error: 'FutureCursor', message: 'Cursor in the future.' }])
    expect(parts(errorFrame('ConsumerTooSlow'))).toEqual([{ op: -1 }, { error: 'ConsumerTooSlow' }])
  })
})

describe('event bodies', () => {
  it('#commit: the sync v1.1 fields, a CAR rooted at the commit, prevData and op prev only when given', async () => {
    const blocks = new BlockMap()
    const commit = await blocks.add({ did: 'did:web:example.com', version: 3 })
    const record = await blocks.add({ $type: 'com.example.thing', value: 1 })
    const prevData: Cid = await cidForCbor(encode({ e: [], l: null }))
    const bytes = await encodeCommitEvent({
      did: 'did:web:example.com',
      commit,
      rev: '3kabcdefghij2',
      since: '3kabcdefghii2',
      prevData,
      ops: [
        { action: 'create', path: 'com.example.thing/a', cid: record },
        { action: 'delete', path: 'com.example.thing/b', cid: null, prev: record },
      ],
      blocks,
      time: '2026-11-23T00:00:00.000Z',
    })
    const [header, body] = parts(eventFrame('commit', 7, bytes))
    expect(header).toEqual({ op: 1, t: '#commit' })
    expect(body).toMatchObject({
      seq: 7,
      repo: 'did:web:example.com',
      rev: '3kabcdefghij2',
      since: '3kabcdefghii2',
      rebase: false,
      tooBig: false,
      blobs: [],
      time: '2026-11-23T00:00:00.000Z',
    })
    expect((body.commit as Cid).equals(commit)).toBe(true)
    expect((body.prevData as Cid).equals(prevData)).toBe(true)
    const ops = body.ops as { action: string; path: string; cid: Cid | null; prev?: Cid }[]
    expect(ops[0]).toEqual({ action: 'create', path: 'com.example.thing/a', cid: record })
    expect('prev' in ops[0]).toBe(false)
    expect(ops[1].cid).toBeNull()
    expect(ops[1].prev?.equals(record)).toBe(true)
    const car = await readCarWithRoot(body.blocks as Uint8Array)
    expect(car.root.equals(commit)).toBe(true)
    expect(car.blocks.size).toBe(2)

    const genesis = await encodeCommitEvent({
      did: 'did:web:example.com',
      commit,
      rev: '3kabcdefghij2',
      since: null,
      prevData: null,
      ops: [],
      blocks,
      time: '2026-11-23T00:00:00.000Z',
    })
    const [, genesisBody] = parts(eventFrame('commit', 1, genesis))
    expect(genesisBody.since).toBeNull()
    expect('prevData' in genesisBody).toBe(false)
  })

  it('#identity and #account bodies', () => {
    const [, identity] = parts(eventFrame('identity', 1, encodeIdentityEvent({ did: 'did:web:a.test', time: 't' })))
    expect(identity).toEqual({ did: 'did:web:a.test', time: 't', seq: 1 })
    const [, account] = parts(eventFrame('account', 2, encodeAccountEvent({ did: 'did:web:a.test', active: false, status: 'deactivated', time: 't' })))
    expect(account).toEqual({ did: 'did:web:a.test', time: 't', active: false, status: 'deactivated', seq: 2 })
  })
})

describe('eventFrame splices seq into the stored bytes', () => {
  /** What a frame is by definition: header, then the decoded body with seq, encoded again. */
  const reencoded = (type: string, seq: number, stored: Uint8Array): Uint8Array =>
    messageFrame(type, { ...(decode(stored) as Record<string, unknown>), seq })

  const bodies = async (): Promise<[string, Uint8Array][]> => {
    const blocks = new BlockMap()
    const commit = await blocks.add({ did: 'did:web:example.com', version: 3 })
    // A body over 65535 bytes (4-byte length heads) with a 200 kB byte string inside.
    const big = await blocks.add({ $type: 'com.example.thing', filler: new Uint8Array(200_000).fill(7) })
    const ops = Array.from({ length: 30 }, (_, i) => ({ action: 'create' as const, path: `com.example.thing/${i}`, cid: big }))
    const input = { did: 'did:web:example.com', commit, rev: '3kabcdefghij2', blocks, time: '2026-11-23T00:00:00.000Z' }
    return [
      ['commit', await encodeCommitEvent({ ...input, since: '3kabcdefghii2', prevData: commit, ops })],
      ['commit', await encodeCommitEvent({ ...input, since: null, prevData: null, ops: [] })],
      ['identity', encodeIdentityEvent({ did: 'did:web:a.test', handle: 'a.test', time: 't' })],
      ['account', encodeAccountEvent({ did: 'did:web:a.test', active: false, status: 'deactivated', time: 't' })],
      // Keys sorting before and after "seq", and the map-size head growing from one byte to two.
      ['info', encode({ a: 1, sa: 2, sez: 3, seq0: 4, x: Array.from({ length: 22 }, (_, i) => i), ...Object.fromEntries(Array.from({ length: 18 }, (_, i) => [`k${i}`, i])) } as never)],
      ['info', encode({} as never)],
    ]
  }

  it('byte for byte what re-encoding gives, for every seq size', async () => {
    for (const [type, stored] of await bodies()) {
      for (const seq of [0, 1, 23, 24, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
        expect(Buffer.from(eventFrame(type, seq, stored)).equals(Buffer.from(reencoded(type, seq, stored)))).toBe(true)
      }
    }
  })

  it('falls back to decoding for a body it does not splice (one that already has a seq)', () => {
    const withSeq = encode({ did: 'x', seq: 5 } as never)
    expect(parts(eventFrame('identity', 6, withSeq))[1]).toEqual({ did: 'x', seq: 6 })
  })
})
