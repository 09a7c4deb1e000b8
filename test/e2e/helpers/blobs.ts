/**
 * Blob helpers for the e2e suites: media files built byte by byte (a real PNG
 * with zlib + a hand-written CRC-32; JPEG, GIF, WebP and MP4 files whose
 * headers are what a sniffer looks at), the CID a blob must get (CIDv1, raw
 * codec 0x55, sha256), raw uploadBlob/getBlob calls, the wrangler dev cron
 * trigger, and a reader for the local R2 state miniflare persists
 * (`<persistDir>/v3/r2/`: one SQLite file per bucket with an `_mf_objects`
 * table, and the object bodies as files under `<bucket>/blobs/<blob_id>`).
 */
import { Database } from 'bun:sqlite'
import { createHash, randomBytes } from 'node:crypto'
import { copyFile, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { deflateSync } from 'node:zlib'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { type XrpcResponse, request, show } from '../xrpc-client'

interface Target {
  url: string
}

// ---------------------------------------------------------------- CIDs

const RAW_CODEC = 0x55
const SHA256_CODE = 0x12

/** The CID a blob of these bytes must get: CIDv1, raw codec, sha256, base32. */
export const blobCid = (bytes: Uint8Array): string =>
  CID.createV1(RAW_CODEC, createDigest(SHA256_CODE, createHash('sha256').update(bytes).digest())).toString()

export const sha256Hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

// ---------------------------------------------------------------- media files

const CRC_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    table[n] = c >>> 0
  }
  return table
})()

/** CRC-32 (ISO 3309, the one PNG chunks carry). */
export const crc32 = (bytes: Uint8Array): number => {
  let c = 0xffffffff
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

const u32be = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}

const u32le = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n >>> 0)
  return b
}

const pngChunk = (type: string, data: Uint8Array): Buffer => {
  const typeAndData = Buffer.concat([Buffer.from(type, 'ascii'), data])
  return Buffer.concat([u32be(data.length), typeAndData, u32be(crc32(typeAndData))])
}

/** A valid RGB PNG of random pixels (so every call gives a different blob). */
export const makePng = (width = 8, height = 8): Uint8Array => {
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 2 // colour type: truecolour
  ihdr[10] = 0 // deflate
  ihdr[11] = 0 // adaptive filtering
  ihdr[12] = 0 // no interlace
  const rows: Buffer[] = []
  for (let y = 0; y < height; y++) rows.push(Buffer.concat([Buffer.from([0]), randomBytes(width * 3)]))
  return new Uint8Array(
    Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      pngChunk('IHDR', ihdr),
      pngChunk('IDAT', deflateSync(Buffer.concat(rows))),
      pngChunk('IEND', new Uint8Array(0)),
    ]),
  )
}

/** SOI, a JFIF APP0 segment, a comment segment of random bytes, EOI. */
export const makeJpeg = (): Uint8Array => {
  const app0 = Buffer.from([
    0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
  ])
  const comment = randomBytes(64)
  const com = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from([0, comment.length + 2]), comment])
  return new Uint8Array(Buffer.concat([Buffer.from([0xff, 0xd8]), app0, com, Buffer.from([0xff, 0xd9])]))
}

/** A 1x1 GIF89a with a comment extension of random bytes. */
export const makeGif = (): Uint8Array => {
  const comment = randomBytes(32)
  return new Uint8Array(
    Buffer.concat([
      Buffer.from('GIF89a', 'ascii'),
      Buffer.from([0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00]), // 1x1, global colour table of 2
      Buffer.from([0xff, 0xff, 0xff, 0x00, 0x00, 0x00]),
      Buffer.from([0x21, 0xfe, comment.length]),
      comment,
      Buffer.from([0x00]),
      Buffer.from([0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00]), // image descriptor
      Buffer.from([0x02, 0x02, 0x44, 0x01, 0x00]), // LZW min code size 2, one sub-block
      Buffer.from([0x3b]),
    ]),
  )
}

/** RIFF/WEBP container with a VP8L (lossless) chunk header and random payload. */
export const makeWebp = (): Uint8Array => {
  const payload = Buffer.concat([Buffer.from([0x2f, 0x00, 0x00, 0x00, 0x00]), randomBytes(27)])
  const chunk = Buffer.concat([Buffer.from('VP8L', 'ascii'), u32le(payload.length), payload])
  const body = Buffer.concat([Buffer.from('WEBP', 'ascii'), chunk])
  return new Uint8Array(Buffer.concat([Buffer.from('RIFF', 'ascii'), u32le(body.length), body]))
}

const box = (type: string, data: Uint8Array): Buffer =>
  Buffer.concat([u32be(8 + data.length), Buffer.from(type, 'ascii'), data])

/** An ISO base media file: `ftyp` (major brand isom), `free`, `mdat` of random bytes. */
export const makeMp4 = (): Uint8Array => {
  const ftyp = box(
    'ftyp',
    Buffer.concat([Buffer.from('isom', 'ascii'), u32be(0x200), Buffer.from('isomiso2avc1mp41', 'ascii')]),
  )
  return new Uint8Array(Buffer.concat([ftyp, box('free', new Uint8Array(0)), box('mdat', randomBytes(256))]))
}

/**
 * Random bytes no sniffer can recognise: a fixed ASCII prefix, so chance can
 * never produce a magic number, then random data.
 */
export const makeRandomBinary = (size: number): Uint8Array => {
  const prefix = Buffer.from('e2e random blob\n', 'ascii')
  const out = new Uint8Array(size)
  out.set(prefix.subarray(0, size))
  if (size > prefix.length) out.set(randomBytes(size - prefix.length), prefix.length)
  return out
}

// ---------------------------------------------------------------- XRPC calls

export interface BlobRefJson {
  $type: 'blob'
  ref: { $link: string }
  mimeType: string
  size: number
}

/** POST uploadBlob with a raw body and Content-Type header. */
export const uploadBlobRaw = (
  pds: Target,
  bytes: Uint8Array | ReadableStream<Uint8Array>,
  contentType: string | undefined,
  token?: string,
): Promise<XrpcResponse> => {
  const headers: Record<string, string> = {}
  if (contentType !== undefined) headers['content-type'] = contentType
  if (token) headers.authorization = `Bearer ${token}`
  const init: RequestInit & { duplex?: 'half' } = { method: 'POST', headers, body: bytes }
  if (bytes instanceof ReadableStream) init.duplex = 'half'
  return request(pds, '/xrpc/com.atproto.repo.uploadBlob', init)
}

/** uploadBlob that must succeed; returns the blob ref. */
export const uploadBlob = async (
  pds: Target,
  token: string,
  bytes: Uint8Array,
  contentType = 'application/octet-stream',
): Promise<BlobRefJson> => {
  const res = await uploadBlobRaw(pds, bytes, contentType, token)
  if (res.status !== 200 || !res.body?.blob) {
    throw new Error(`uploadBlob (${bytes.length} bytes, ${contentType}) failed: ${show(res)}`)
  }
  return res.body.blob as BlobRefJson
}

/** GET com.atproto.sync.getBlob, optionally with extra headers (Range). */
export const getBlob = (
  pds: Target,
  did: string,
  cid: string,
  headers: Record<string, string> = {},
): Promise<XrpcResponse> =>
  request(pds, `/xrpc/com.atproto.sync.getBlob?${new URLSearchParams({ did, cid })}`, { headers })

/**
 * The "blob not found" answer of getBlob: 400 with the lexicon's error name
 * `BlobNotFound`. (The reference PDS's getBlob.ts throws a bare
 * `InvalidRequestError('Blob not found')`, i.e. `{error: 'InvalidRequest',
 * message: 'Blob not found'}`; that is accepted too.)
 */
export const isBlobNotFound = (res: XrpcResponse): boolean =>
  res.status === 400 &&
  (res.body?.error === 'BlobNotFound' ||
    (res.body?.error === 'InvalidRequest' && /blob not found/i.test(res.body?.message ?? '')))

export const expectBlobNotFound = (res: XrpcResponse, what: string): void => {
  if (!isBlobNotFound(res)) throw new Error(`${what}: expected 400 BlobNotFound, got ${show(res)}`)
}

/** A post with one image embed. */
export const imagePost = (text: string, ...images: BlobRefJson[]): Record<string, unknown> => ({
  $type: 'app.bsky.feed.post',
  text,
  createdAt: new Date().toISOString(),
  embed: {
    $type: 'app.bsky.embed.images',
    images: images.map((image, i) => ({ alt: `image ${i}`, image })),
  },
})

// ---------------------------------------------------------------- cron, polling

/** Runs the Worker's scheduled() handler through wrangler dev's local route. */
export const triggerCron = async (pds: Target): Promise<void> => {
  const res = await request(pds, '/cdn-cgi/local/scheduled')
  if (res.status !== 200) throw new Error(`GET /cdn-cgi/local/scheduled: ${show(res)}`)
}

export const sleep = (ms: number): Promise<void> => new Promise((ok) => setTimeout(ok, ms))

/**
 * Calls `check` every `intervalMs` until it returns true or `timeoutMs` has
 * passed; then throws with `describe()` (the last state seen).
 */
export const pollUntil = async (
  check: () => Promise<boolean>,
  opts: { timeoutMs: number; intervalMs?: number; describe: () => string },
): Promise<void> => {
  const deadline = Date.now() + opts.timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() >= deadline) throw new Error(`not true after ${opts.timeoutMs} ms: ${opts.describe()}`)
    await sleep(opts.intervalMs ?? 250)
  }
}

// ---------------------------------------------------------------- local R2 state

export interface R2Object {
  key: string
  size: number
  /** sha256 (hex) of the stored body, read from miniflare's blob files. */
  sha256: string | null
}

export interface R2State {
  objects: R2Object[]
  /** Every body file under v3/r2/<bucket>/blobs/, live or orphaned. */
  files: { name: string; size: number; sha256: string }[]
}

const listDir = (dir: string): Promise<string[]> => readdir(dir).catch(() => [] as string[])

/**
 * Reads what miniflare has persisted for R2. The SQLite files (and their WAL)
 * are copied first, so workerd's open database is never touched.
 */
export const readR2State = async (persistDir: string): Promise<R2State> => {
  const r2 = join(persistDir, 'v3', 'r2')
  const blobDirs: string[] = []
  for (const name of await listDir(r2)) {
    if (name.startsWith('miniflare-')) continue
    blobDirs.push(join(r2, name, 'blobs'))
  }
  const files: R2State['files'] = []
  const fileByName = new Map<string, Uint8Array>()
  for (const dir of blobDirs) {
    for (const name of await listDir(dir)) {
      const bytes = await readFile(join(dir, name)).catch(() => null)
      if (!bytes) continue // deleted while we listed
      fileByName.set(name, bytes)
      files.push({ name, size: bytes.length, sha256: sha256Hex(bytes) })
    }
  }

  const objects: R2Object[] = []
  const metaDir = join(r2, 'miniflare-R2BucketObject')
  const dbFiles = (await listDir(metaDir)).filter((f) => f.endsWith('.sqlite') && f !== 'metadata.sqlite')
  for (const dbFile of dbFiles) {
    const copyDir = await mkdtemp(join(tmpdir(), 'r2-state-'))
    try {
      const copy = join(copyDir, 'bucket.sqlite')
      await copyFile(join(metaDir, dbFile), copy)
      for (const suffix of ['-wal', '-shm']) {
        const src = join(metaDir, dbFile + suffix)
        if (await stat(src).then(() => true, () => false)) await copyFile(src, copy + suffix).catch(() => {})
      }
      const db = new Database(copy)
      try {
        const hasTable = db.query("SELECT 1 FROM sqlite_master WHERE type='table' AND name='_mf_objects'").get()
        if (!hasTable) continue
        const rows = db.query('SELECT key, blob_id, size FROM _mf_objects').all() as {
          key: string
          blob_id: string | null
          size: number
        }[]
        const partsQuery = db.query(
          'SELECT blob_id FROM _mf_multipart_parts WHERE object_key = ? ORDER BY part_number',
        )
        for (const row of rows) {
          let body: Uint8Array | null = null
          if (row.blob_id) {
            body = fileByName.get(row.blob_id) ?? null
          } else {
            const parts = (partsQuery.all(row.key) as { blob_id: string }[]).map((p) => fileByName.get(p.blob_id))
            if (parts.every((p) => p)) body = Buffer.concat(parts as Uint8Array[])
          }
          objects.push({ key: row.key, size: row.size, sha256: body ? sha256Hex(body) : null })
        }
      } finally {
        db.close()
      }
    } finally {
      await rm(copyDir, { recursive: true, force: true })
    }
  }
  return { objects, files }
}

/** How many live R2 objects, and how many body files, hold exactly these bytes. */
export const countStored = async (
  persistDir: string,
  bytes: Uint8Array,
): Promise<{ objects: number; files: number; state: R2State }> => {
  const hash = sha256Hex(bytes)
  const state = await readR2State(persistDir)
  return {
    objects: state.objects.filter((o) => o.sha256 === hash).length,
    files: state.files.filter((f) => f.sha256 === hash).length,
    state,
  }
}

export const describeR2 = (state: R2State): string =>
  `${state.objects.length} objects [${state.objects
    .map((o) => `${o.key}:${o.size}`)
    .join(', ')}], ${state.files.length} body files (${state.files.reduce((n, f) => n + f.size, 0)} bytes)`
