/**
 * Reading a CAR v1 file (ipld.io/specs/transport/car/carv1) as it streams in,
 * one block at a time, so a large repo never sits whole in memory: a varint
 * length, the dag-cbor header `{version: 1, roots: [cid]}`, then sections of
 * varint length + CID + block bytes. Every block's CID is checked against
 * its bytes (sha-256, the only hash atproto uses) before it is handed on.
 */
import { decode } from '@atproto/lex-cbor'
import { CID } from 'multiformats/cid'

/** The CAR cannot be imported: malformed, truncated, a block that does not match its CID, an invalid tree. */
export class InvalidImportError extends Error {
  override name = 'InvalidImportError'
}

export interface CarBlock {
  cid: string
  /** multicodec of the block: 0x71 dag-cbor or 0x55 raw. */
  codec: number
  bytes: Uint8Array
}

const SHA256 = 0x12
const DAG_CBOR = 0x71
const RAW = 0x55
/** A block is one D1 row: nothing larger can be stored anyway. */
const MAX_SECTION_BYTES = 2_000_000
const MAX_HEADER_BYTES = 64 * 1024

/** A byte queue over a stream: take exactly n bytes, or a varint, awaiting more as needed. */
class ByteReader {
  private buffer = new Uint8Array(0)
  private offset = 0
  private done = false
  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  private get available(): number {
    return this.buffer.byteLength - this.offset
  }

  /**
   * Ensures `n` bytes are buffered; false at a clean end of stream with
   * nothing buffered. Chunks are gathered first and joined once, so a block
   * arriving in many small chunks is copied once, not once per chunk.
   */
  private async fill(n: number): Promise<boolean> {
    if (this.available >= n) return true
    const chunks: Uint8Array[] = [this.buffer.subarray(this.offset)]
    let have = this.available
    while (have < n && !this.done) {
      const { done, value } = await this.reader.read()
      if (done) this.done = true
      else if (value.byteLength > 0) {
        chunks.push(value)
        have += value.byteLength
      }
    }
    if (chunks.length > 1) {
      const joined = new Uint8Array(have)
      let at = 0
      for (const chunk of chunks) {
        joined.set(chunk, at)
        at += chunk.byteLength
      }
      this.buffer = joined
      this.offset = 0
    }
    if (have >= n) return true
    if (have === 0) return false
    throw new InvalidImportError('The CAR file ends in the middle of a block (truncated)')
  }

  /** An unsigned LEB128 varint, or null at the clean end of the stream. */
  async varint(): Promise<number | null> {
    let value = 0
    for (let i = 0; i < 9; i++) {
      if (!(await this.fill(1))) {
        if (i === 0) return null
        throw new InvalidImportError('The CAR file ends in the middle of a block (truncated)')
      }
      const byte = this.buffer[this.offset++]
      value += (byte & 0x7f) * 2 ** (7 * i)
      if ((byte & 0x80) === 0) return value
    }
    throw new InvalidImportError('The CAR file has a malformed length prefix')
  }

  async take(n: number): Promise<Uint8Array> {
    if (!(await this.fill(n))) throw new InvalidImportError('The CAR file ends in the middle of a block (truncated)')
    const out = this.buffer.slice(this.offset, this.offset + n)
    this.offset += n
    return out
  }
}

/** Reads the header; returns the root CID and an iterator of verified blocks. */
export const readCarStream = async (stream: ReadableStream<Uint8Array>): Promise<{ root: string; blocks: AsyncGenerator<CarBlock> }> => {
  const reader = new ByteReader(stream.getReader())
  const headerLength = await reader.varint()
  if (headerLength === null || headerLength === 0 || headerLength > MAX_HEADER_BYTES) throw new InvalidImportError('The body is not a CAR file (no header)')
  let header: { version?: unknown; roots?: unknown }
  try {
    header = decode(await reader.take(headerLength)) as typeof header
  } catch (err) {
    throw err instanceof InvalidImportError ? err : new InvalidImportError('The body is not a CAR file (unreadable header)')
  }
  if (header?.version !== 1) throw new InvalidImportError('Only CAR version 1 is supported')
  const roots = header.roots
  if (!Array.isArray(roots) || roots.length !== 1) throw new InvalidImportError('expected one root')
  const root = String(roots[0])
  return { root, blocks: blocksOf(reader) }
}

async function* blocksOf(reader: ByteReader): AsyncGenerator<CarBlock> {
  for (;;) {
    const length = await reader.varint()
    if (length === null) return
    if (length === 0 || length > MAX_SECTION_BYTES) throw new InvalidImportError(`A CAR section of ${length} bytes is not a block this PDS can store`)
    const section = await reader.take(length)
    let cid: CID
    let bytes: Uint8Array
    try {
      ;[cid, bytes] = CID.decodeFirst(section) as [CID, Uint8Array]
    } catch {
      throw new InvalidImportError('A CAR section starts with an invalid CID')
    }
    if (cid.version !== 1 || cid.multihash.code !== SHA256 || (cid.code !== DAG_CBOR && cid.code !== RAW)) {
      throw new InvalidImportError(`Unsupported block CID ${cid} (atproto repos use CIDv1, sha-256, dag-cbor or raw)`)
    }
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))
    if (!equalBytes(digest, cid.multihash.digest)) throw new InvalidImportError(`Block ${cid} does not match its CID`)
    yield { cid: cid.toString(), codec: cid.code, bytes }
  }
}

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}
