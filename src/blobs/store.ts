/**
 * The blob store: bytes in R2, their index rows in D1 (src/db/blobs.ts).
 *
 * Uploads are streamed straight into R2 while their SHA-256 is computed with
 * `crypto.DigestStream`, a MiB at a time through two reused buffers, so a
 * 100 MB video never sits in the isolate's memory (it holds 2 MiB whatever
 * the size); the size limit is enforced as the bytes flow. Objects are stored
 * under a random key and indexed by CID, so no copy or rename is needed once
 * the hash is known; the same bytes uploaded twice keep one object.
 */
import { cidForRawHash } from '@atproto/lex-data'
import { concatBytes } from '@atproto/repo'
import type { Db } from '../db/client'
import { getReferencedBlobRow, upsertBlob } from '../db/blobs'
import { blobResponse, parseRange, unsatisfiableRange } from './serve'
import { SNIFF_BYTES, sniffMimeType } from './sniff'

export class BlobTooLargeError extends Error {
  override name = 'BlobTooLargeError'
}

export class LengthRequiredError extends Error {
  override name = 'LengthRequiredError'
}

/** An upload with no bytes: no record can use it, so it is refused rather than stored. */
export class EmptyBlobError extends Error {
  override name = 'EmptyBlobError'
}

export interface StoredUpload {
  key: string
  cid: string
  size: number
  mimeType: string
}

/** Bodies without Content-Length are buffered (R2 needs a known length), so only small ones. */
const MAX_UNSIZED_BYTES = 8 * 1024 * 1024

/**
 * Bytes taken from the body per step. A request body arrives in 4 KiB pieces
 * (workerd, locally); handing each to JS to hash and forward cost ~15 ms of
 * CPU per MB, reading a MiB at a time into a reused buffer ~1.5 ms per MB.
 */
const CHUNK_BYTES = 1024 * 1024

const noop = (): void => undefined

/** A reader that fills our buffers (request bodies are byte streams; anything else is made one). */
const byteReader = (body: ReadableStream<Uint8Array>): ReadableStreamBYOBReader => {
  try {
    return body.getReader({ mode: 'byob' })
  } catch {
    return body.pipeThrough(new IdentityTransformStream()).getReader({ mode: 'byob' })
  }
}

/**
 * Reads the body CHUNK_BYTES at a time into two buffers used in turn, so the
 * next chunk arrives while `use` (hash, forward) is still busy with the last.
 * A chunk's buffer is filled again once `use`'s promise for it has settled,
 * so `use` must be done with the bytes by then (a copy if it keeps them).
 */
const readInChunks = async (reader: ReadableStreamBYOBReader, use: (chunk: Uint8Array) => Promise<unknown>): Promise<void> => {
  const buffers = [new ArrayBuffer(CHUNK_BYTES), new ArrayBuffer(CHUNK_BYTES)]
  let busy: Promise<unknown> = Promise.resolve()
  for (let turn = 0; ; turn = 1 - turn) {
    const { value, done } = await reader.readAtLeast(CHUNK_BYTES, new Uint8Array(buffers[turn]))
    if (value && value.byteLength > 0) {
      await busy
      busy = use(value)
      busy.catch(noop) // awaited on the next turn; this only stops it counting as unhandled meanwhile
      buffers[turn] = value.buffer as ArrayBuffer
    }
    if (done) break
  }
  await busy
}

/**
 * Streams an upload into `bucket` under a fresh key and returns its CID, size
 * and MIME type; on any failure nothing is left under that key. (Exported for
 * bench/blob-probe, which runs it with and without the real R2.)
 */
export const uploadToR2 = async (
  bucket: R2Bucket,
  body: ReadableStream<Uint8Array>,
  opts: { contentLength: number | null; contentType: string | null; limit: number },
): Promise<StoredUpload> => {
  const { contentLength, limit } = opts
  const tooLarge = () => new BlobTooLargeError(`Blob is larger than the limit (${limit} bytes)`)
  if (contentLength === 0) throw new EmptyBlobError('The uploaded blob is empty')
  if (contentLength !== null && contentLength > limit) throw tooLarge()
  const key = `blobs/${crypto.randomUUID()}`
  const digest = new crypto.DigestStream('SHA-256')
  const hasher = digest.getWriter()
  const head = new Uint8Array(SNIFF_BYTES)
  let size = 0
  /** Counts, keeps the first bytes for sniffing and hashes a chunk. */
  const meter = (chunk: Uint8Array): Promise<void> => {
    if (size < SNIFF_BYTES) head.set(chunk.subarray(0, SNIFF_BYTES - size), size)
    size += chunk.byteLength
    if (size > limit) throw tooLarge()
    return hasher.write(chunk)
  }
  const reader = byteReader(body)
  try {
    if (contentLength !== null) {
      // R2 takes a stream of known length; the bytes go to it and to the hash as they arrive.
      const fixed = new FixedLengthStream(contentLength)
      const writer = fixed.writable.getWriter()
      const forward = async (): Promise<void> => {
        await readInChunks(reader, (chunk) => Promise.all([meter(chunk), writer.write(chunk)]))
        await writer.close()
      }
      try {
        await Promise.all([bucket.put(key, fixed.readable), forward()])
      } catch (err) {
        writer.abort(err).catch(noop)
        throw err
      }
    } else {
      const max = Math.min(limit, MAX_UNSIZED_BYTES)
      const parts: Uint8Array[] = []
      await readInChunks(reader, async (chunk) => {
        if (size + chunk.byteLength > max && max < limit) throw new LengthRequiredError('Uploads over 8 MiB must send Content-Length')
        await meter(chunk)
        parts.push(chunk.slice())
      })
      if (size === 0) throw new EmptyBlobError('The uploaded blob is empty')
      await bucket.put(key, concatBytes(parts))
    }
  } catch (err) {
    reader.cancel(err).catch(noop)
    await bucket.delete(key).catch(noop)
    if (err instanceof BlobTooLargeError || err instanceof LengthRequiredError || err instanceof EmptyBlobError) throw err
    if (size > limit) throw tooLarge()
    throw err
  }
  await hasher.close()
  const cid = cidForRawHash(new Uint8Array(await digest.digest)).toString()
  const sniffed = sniffMimeType(head.subarray(0, Math.min(size, SNIFF_BYTES)))
  const declared = opts.contentType?.split(';')[0].trim().toLowerCase().replace(/^.*\*.*$/, '') || null
  return { key, cid, size, mimeType: sniffed ?? declared ?? 'application/octet-stream' }
}

/** A blob reference as uploadBlob answers it (the JSON form of a lex blob). */
export interface BlobRefView {
  $type: 'blob'
  ref: { $link: string }
  mimeType: string
  size: number
}

export class BlobStore {
  constructor(
    private readonly bucket: R2Bucket,
    private readonly db: Db,
    private readonly waitUntil: (promise: Promise<unknown>) => void,
  ) {}

  /** Streams an upload into R2 and indexes it; the same bytes twice keep one object. */
  async upload(
    body: ReadableStream<Uint8Array>,
    opts: { contentLength: number | null; contentType: string | null; limit: number },
  ): Promise<BlobRefView> {
    const upload = await uploadToR2(this.bucket, body, opts)
    const row = { cid: upload.cid, r2Key: upload.key, mimeType: upload.mimeType, size: upload.size }
    const keptKey = await upsertBlob(this.db, row, new Date().toISOString())
    if (keptKey !== upload.key) this.waitUntil(this.bucket.delete(upload.key))
    return { $type: 'blob', ref: { $link: upload.cid }, mimeType: upload.mimeType, size: upload.size }
  }

  /**
   * A blob some record references, as a download (with a byte range when
   * asked), or null when there is no such blob.
   */
  async serve(cid: string, rangeHeader: string | null): Promise<Response | null> {
    const row = await getReferencedBlobRow(this.db, cid)
    if (!row) return null
    const range = parseRange(rangeHeader, row.size)
    if (range === 'unsatisfiable') return unsatisfiableRange(row.size)
    const object = await this.bucket.get(row.r2Key, range ? { range } : {})
    return object ? blobResponse(row, object, range) : null
  }

  /** Deletes objects whose index rows are gone (the cron's blob collection). */
  async deleteObjects(keys: string[]): Promise<void> {
    if (keys.length > 0) await this.bucket.delete(keys)
  }
}
