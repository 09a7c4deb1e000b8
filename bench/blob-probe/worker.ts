/**
 * The bench's blob probe: the two halves of an uploadBlob, timed apart.
 *
 *   POST /hash   the Worker's upload code (src/blobs/store.ts: read, hash,
 *                sniff, forward) into a bucket that drops the bytes
 *   POST /r2     wrangler's local R2 alone: the body piped natively into
 *                `put`, no hashing, no JS per chunk
 *
 * Both want Content-Length and answer {size, cid?}.
 */
import { uploadToR2 } from '../../src/blobs/store'

interface Env {
  BLOBS: R2Bucket
}

const CHUNK = 1024 * 1024

/** An R2Bucket stand-in whose put reads the stream to the end and keeps nothing. */
const discarding = {
  async put(_key: string, value: ReadableStream<Uint8Array>): Promise<null> {
    const reader = value.getReader({ mode: 'byob' })
    let buffer = new ArrayBuffer(CHUNK)
    for (;;) {
      const { value: chunk, done } = await reader.readAtLeast(CHUNK, new Uint8Array(buffer))
      if (chunk) buffer = chunk.buffer as ArrayBuffer
      if (done) return null
    }
  },
  async delete(): Promise<void> {},
} as unknown as R2Bucket

export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    const length = Number(req.headers.get('content-length'))
    if (!req.body || !Number.isSafeInteger(length)) return new Response('Content-Length and a body, please', { status: 411 })
    const path = new URL(req.url).pathname
    if (path === '/hash') {
      const up = await uploadToR2(discarding, req.body, { contentLength: length, contentType: req.headers.get('content-type'), limit: Number.MAX_SAFE_INTEGER })
      return Response.json({ size: up.size, cid: up.cid })
    }
    if (path === '/r2') {
      await env.BLOBS.put(`probe/${crypto.randomUUID()}`, req.body.pipeThrough(new FixedLengthStream(length)))
      return Response.json({ size: length })
    }
    return new Response('POST /hash or /r2', { status: 404 })
  },
} satisfies ExportedHandler<Env>
