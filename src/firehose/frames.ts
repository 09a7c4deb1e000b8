/**
 * Event-stream frames (atproto "Event Stream" spec): each WebSocket binary
 * message is two concatenated DAG-CBOR objects, a header `{op: 1, t: '#type'}`
 * and the body; errors are `{op: -1}` + `{error, message}`. Pure functions.
 */
import { decode, encode } from '@atproto/lex-cbor'

const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.byteLength + b.byteLength)
  out.set(a, 0)
  out.set(b, a.byteLength)
  return out
}

/** A message frame for a stored event body: the stored body gains its `seq`. */
export const eventFrame = (type: string, seq: number, storedBody: Uint8Array): Uint8Array => {
  const body = decode(storedBody) as Record<string, unknown>
  body.seq = seq
  return concat(encode({ op: 1, t: `#${type}` }), encode(body as never))
}

/** A message frame built from a plain body (e.g. `#info`). */
export const messageFrame = (type: string, body: Record<string, unknown>): Uint8Array =>
  concat(encode({ op: 1, t: `#${type}` }), encode(body as never))

export const errorFrame = (error: string, message?: string): Uint8Array =>
  concat(encode({ op: -1 }), encode((message ? { error, message } : { error }) as never))
