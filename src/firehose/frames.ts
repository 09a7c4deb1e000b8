/**
 * Event-stream frames (atproto "Event Stream" spec): each WebSocket binary
 * message is two concatenated DAG-CBOR objects, a header `{op: 1, t: '#type'}`
 * and the body; errors are `{op: -1}` + `{error, message}`. Pure functions.
 */
import { decode, encode } from '@atproto/lex-cbor'
import { concatBytes } from '@atproto/repo'

/** A message frame for a stored event body: the stored body gains its `seq`. */
export const eventFrame = (type: string, seq: number, storedBody: Uint8Array): Uint8Array =>
  messageFrame(type, { ...(decode(storedBody) as Record<string, unknown>), seq })

/** A message frame built from a plain body (e.g. `#info`). */
export const messageFrame = (type: string, body: Record<string, unknown>): Uint8Array =>
  concatBytes([encode({ op: 1, t: `#${type}` }), encode(body as never)])

export const errorFrame = (error: string, message?: string): Uint8Array =>
  concatBytes([encode({ op: -1 }), encode((message ? { error, message } : { error }) as never)])
