/**
 * Reading a body from elsewhere (an upstream's error, a client's metadata
 * document) without trusting its size: at most `maxBytes`, cancelled as soon
 * as it is longer. A leaf, so proxy/ and oauth/ share it.
 */
import { concatBytes } from '@atproto/repo'

/** The whole body, or null (the stream cancelled) once it passes `maxBytes`. */
export const readBodyUpTo = async (body: ReadableStream<Uint8Array> | null, maxBytes: number): Promise<Uint8Array | null> => {
  if (!body) return new Uint8Array(0)
  const reader = body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return concatBytes(chunks)
    total += value.byteLength
    if (total > maxBytes) {
      await reader.cancel()
      return null
    }
    chunks.push(value)
  }
}
