/**
 * How a blob is served: the stored MIME type, never sniffed by browsers, in a
 * sandbox with no active content (so an uploaded HTML or SVG file cannot run
 * as a page of this origin), cacheable forever (a CID names fixed bytes), and
 * with byte ranges for video players.
 */
import type { BlobRow } from '../db/blobs'

/** `ranged`: the request asked for a byte range (R2 reports a range even when none was asked). */
export const blobResponse = (row: BlobRow, object: R2ObjectBody, ranged: boolean): Response => {
  const headers = new Headers({
    'content-type': row.mimeType,
    'content-security-policy': "default-src 'none'; sandbox",
    'x-content-type-options': 'nosniff',
    'cache-control': 'public, max-age=31536000, immutable',
    etag: `"${row.cid}"`,
    'accept-ranges': 'bytes',
  })
  const range = object.range as { offset?: number; length?: number; suffix?: number } | undefined
  if (ranged && range && (range.offset !== undefined || range.suffix !== undefined)) {
    const length = range.suffix ?? range.length ?? row.size - (range.offset ?? 0)
    const start = range.suffix !== undefined ? row.size - range.suffix : (range.offset ?? 0)
    headers.set('content-range', `bytes ${start}-${start + length - 1}/${row.size}`)
    headers.set('content-length', String(length))
    return new Response(object.body, { status: 206, headers })
  }
  headers.set('content-length', String(row.size))
  return new Response(object.body, { status: 200, headers })
}
