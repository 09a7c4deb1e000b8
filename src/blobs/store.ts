/**
 * The blob store: bytes in R2, their index rows in D1 (src/db/blobs.ts).
 *
 * Uploads are streamed straight into R2 while their SHA-256 is computed with
 * `crypto.DigestStream`, so a 100 MB video never sits in the isolate's
 * memory; the size limit is enforced as the bytes flow. Objects are stored
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

const uploadToR2 = async (
  bucket: R2Bucket,
  body: ReadableStream<Uint8Array>,
  opts: { contentLength: number | null; contentType: string | null; limit: number },
): Promise<StoredUpload> => {
  const { contentLength, limit } = opts
  if (contentLength === 0) throw new EmptyBlobError('The uploaded blob is empty')
  if (contentLength !== null && contentLength > limit) throw new BlobTooLargeError(`Blob is larger than the limit (${limit} bytes)`)
  const key = `blobs/${crypto.randomUUID()}`
  const digest = new crypto.DigestStream('SHA-256')
  const hasher = digest.getWriter()
  const head = new Uint8Array(SNIFF_BYTES)
  let size = 0
  const meter = new TransformStream<Uint8Array, Uint8Array>({
    async transform(chunk, controller) {
      if (size < SNIFF_BYTES) head.set(chunk.subarray(0, SNIFF_BYTES - size), size)
      size += chunk.byteLength
      if (size > limit) throw new BlobTooLargeError(`Blob is larger than the limit (${limit} bytes)`)
      await hasher.write(chunk)
      controller.enqueue(chunk)
    },
    async flush() {
      await hasher.close()
    },
  })
  let source = body.pipeThrough(meter)
  if (contentLength !== null) {
    source = source.pipeThrough(new FixedLengthStream(contentLength))
  }
  try {
    if (contentLength !== null) {
      await bucket.put(key, source)
    } else {
      const bytes = await readBounded(source, Math.min(limit, MAX_UNSIZED_BYTES))
      await bucket.put(key, bytes)
    }
  } catch (err) {
    await bucket.delete(key).catch(() => undefined)
    if (err instanceof BlobTooLargeError || err instanceof LengthRequiredError) throw err
    if (size > limit) throw new BlobTooLargeError(`Blob is larger than the limit (${limit} bytes)`)
    throw err
  }
  if (size === 0) {
    await bucket.delete(key).catch(() => undefined)
    throw new EmptyBlobError('The uploaded blob is empty')
  }
  const cid = cidForRawHash(new Uint8Array(await digest.digest)).toString()
  const sniffed = sniffMimeType(head.subarray(0, Math.min(size, SNIFF_BYTES)))
  const declared = opts.contentType?.split(';')[0].trim().toLowerCase().replace(/^.*\*.*$/, '') || null
  return { key, cid, size, mimeType: sniffed ?? declared ?? 'application/octet-stream' }
}

const readBounded = async (stream: ReadableStream<Uint8Array>, max: number): Promise<Uint8Array> => {
  const parts: Uint8Array[] = []
  let total = 0
  for await (const part of stream) {
    total += part.byteLength
    if (total > max) throw new LengthRequiredError('Uploads over 8 MiB must send Content-Length')
    parts.push(part)
  }
  return concatBytes(parts)
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
