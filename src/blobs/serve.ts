/**
 * How a blob is served: the stored MIME type, never sniffed by browsers, as
 * an attachment in a sandbox with no active content (so an uploaded HTML or
 * SVG file cannot run as a page of this origin), and with byte ranges for
 * video players.
 */
import type { BlobRow } from '../db/blobs'

export type ByteRange = { offset: number; length: number }

/**
 * Parses a single `bytes=` range (RFC 9110 §14): null when absent, malformed,
 * multi-range or another unit (the whole body is served); 'unsatisfiable'
 * when it starts past the end.
 */
export const parseRange = (header: string | null, size: number): ByteRange | 'unsatisfiable' | null => {
  const m = header?.trim().match(/^bytes=(\d*)-(\d*)$/)
  if (!m || (m[1] === '' && m[2] === '')) return null
  if (m[1] === '') {
    const suffix = Number(m[2])
    if (suffix === 0) return 'unsatisfiable'
    const length = Math.min(suffix, size)
    return { offset: size - length, length }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  if (m[2] !== '' && Number(m[2]) < start) return null
  if (start >= size) return 'unsatisfiable'
  return { offset: start, length: end - start + 1 }
}

/** 416 for a range past the end, as RFC 9110 asks. */
export const unsatisfiableRange = (size: number): Response =>
  new Response(null, { status: 416, headers: { 'content-range': `bytes */${size}` } })

export const blobResponse = (row: BlobRow, object: R2ObjectBody, range: ByteRange | null): Response => {
  const headers = new Headers({
    'content-type': row.mimeType,
    'content-security-policy': "default-src 'none'; sandbox",
    'x-content-type-options': 'nosniff',
    // As the reference: a download, not a page; not shared by caches, so a
    // deleted blob is really gone.
    'content-disposition': `attachment; filename="${row.cid}"`,
    'cache-control': 'private',
    vary: 'Authorization',
    etag: `"${row.cid}"`,
    'accept-ranges': 'bytes',
  })
  if (range) {
    headers.set('content-range', `bytes ${range.offset}-${range.offset + range.length - 1}/${row.size}`)
    headers.set('content-length', String(range.length))
    return new Response(object.body, { status: 206, headers })
  }
  headers.set('content-length', String(row.size))
  return new Response(object.body, { status: 200, headers })
}
