/**
 * Event-stream frames (atproto "Event Stream" spec): each WebSocket binary
 * message is two concatenated DAG-CBOR objects, a header `{op: 1, t: '#type'}`
 * and the body; errors are `{op: -1}` + `{error, message}`. Pure functions.
 *
 * A stored event body is a DAG-CBOR map without `seq`. The frame's body is
 * the same map with `seq` added at its canonical place (DAG-CBOR orders keys
 * by length, then bytewise), so eventFrame splices the entry into the stored
 * bytes instead of decoding and re-encoding a body that may carry ~2 MB of
 * CAR: one copy per frame, which is what the hub's memory budget counts on.
 * The result is byte for byte what encoding `{...body, seq}` gives.
 */
import { decode, encode } from '@atproto/lex-cbor'
import { concatBytes } from '@atproto/repo'

/** A message frame for a stored event body: the stored body gains its `seq`. */
export const eventFrame = (type: string, seq: number, storedBody: Uint8Array): Uint8Array => {
  const header = encode({ op: 1, t: `#${type}` })
  const spliced = spliceSeq(storedBody, seq, header)
  return spliced ?? messageFrame(type, { ...(decode(storedBody) as Record<string, unknown>), seq })
}

/** A message frame built from a plain body (e.g. `#info`). */
export const messageFrame = (type: string, body: Record<string, unknown>): Uint8Array =>
  concatBytes([encode({ op: 1, t: `#${type}` }), encode(body as never)])

export const errorFrame = (error: string, message?: string): Uint8Array =>
  concatBytes([encode({ op: -1 }), encode((message ? { error, message } : { error }) as never)])

const SEQ_KEY = new TextEncoder().encode('seq')
const MAP = 5
const TEXT = 3

/** A CBOR head (major type + argument), shortest form as DAG-CBOR requires. */
const head = (major: number, value: number): Uint8Array => {
  const m = major << 5
  if (value < 24) return Uint8Array.of(m | value)
  if (value < 0x100) return Uint8Array.of(m | 24, value)
  if (value < 0x10000) return Uint8Array.of(m | 25, value >> 8, value & 0xff)
  if (value < 0x100000000) return Uint8Array.of(m | 26, value >>> 24, (value >> 16) & 0xff, (value >> 8) & 0xff, value & 0xff)
  const out = new Uint8Array(9)
  out[0] = m | 27
  new DataView(out.buffer).setBigUint64(1, BigInt(value))
  return out
}

interface Head {
  major: number
  info: number
  /** The argument (length, count or value); NaN for floats/simple values with a payload we only skip. */
  value: number
  /** Offset after the head. */
  next: number
}

const readHead = (bytes: Uint8Array, at: number): Head => {
  if (at >= bytes.length) throw new RangeError('truncated CBOR')
  const major = bytes[at] >> 5
  const info = bytes[at] & 0x1f
  if (info < 24) return { major, info, value: info, next: at + 1 }
  const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0
  if (size === 0 || at + 1 + size > bytes.length) throw new RangeError('unsupported CBOR head')
  let value = 0
  for (let i = 0; i < size; i++) value = value * 256 + bytes[at + 1 + i]
  return { major, info, value, next: at + 1 + size }
}

/** Offset just after the data item starting at `at` (definite lengths only, as DAG-CBOR). */
const skipItem = (bytes: Uint8Array, at: number): number => {
  const h = readHead(bytes, at)
  switch (h.major) {
    case 0:
    case 1:
    case 7:
      return h.next
    case 2:
    case 3:
      return h.next + h.value
    case 4: {
      let p = h.next
      for (let i = 0; i < h.value; i++) p = skipItem(bytes, p)
      return p
    }
    case 5: {
      let p = h.next
      for (let i = 0; i < h.value * 2; i++) p = skipItem(bytes, p)
      return p
    }
    default: // 6: a tag (CIDs are tag 42) wraps one item
      return skipItem(bytes, h.next)
  }
}

/** DAG-CBOR key order: shorter first, then bytewise. Negative when `a` sorts before `b`. */
const compareKeys = (a: Uint8Array, b: Uint8Array): number => {
  if (a.length !== b.length) return a.length - b.length
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return 0
}

/**
 * `header` + the stored map with a `seq` entry inserted, or null when the
 * bytes are not a plain map of text keys without `seq` (the caller then
 * falls back to decoding).
 */
const spliceSeq = (body: Uint8Array, seq: number, header: Uint8Array): Uint8Array | null => {
  if (!Number.isSafeInteger(seq) || seq < 0) return null
  try {
    const map = readHead(body, 0)
    if (map.major !== MAP) return null
    let at = map.next
    let insertAt = -1
    for (let i = 0; i < map.value; i++) {
      const key = readHead(body, at)
      if (key.major !== TEXT) return null
      const cmp = compareKeys(body.subarray(key.next, key.next + key.value), SEQ_KEY)
      if (cmp === 0) return null
      if (cmp > 0 && insertAt < 0) insertAt = at
      at = skipItem(body, key.next + key.value)
    }
    if (at !== body.length) return null
    if (insertAt < 0) insertAt = at
    const entry = concatBytes([head(TEXT, SEQ_KEY.length), SEQ_KEY, head(0, seq)])
    const mapHead = head(MAP, map.value + 1)
    const out = new Uint8Array(header.length + mapHead.length + (body.length - map.next) + entry.length)
    let p = 0
    for (const part of [header, mapHead, body.subarray(map.next, insertAt), entry, body.subarray(insertAt)]) {
      out.set(part, p)
      p += part.length
    }
    return out
  } catch {
    return null
  }
}
