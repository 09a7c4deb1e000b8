/**
 * Reads of the repo: records from the index, CAR exports (com.atproto.sync
 * getRepo, getRecord proofs, getBlocks). Never writes.
 *
 * getRepo streams: blocks are paged out of D1 by CID (a bounded number of
 * round trips, within the Workers subrequest limit) and written as CAR bytes
 * as they arrive, so a large repo never sits whole in isolate memory. The
 * page filter selects the snapshot at the root's rev, so a write that lands
 * mid-stream does not tear the export (removed blocks are kept for an hour).
 */
import { decode } from '@atproto/lex-cbor'
import { type Cid, parseCid } from '@atproto/lex-data'
import { lexToJson } from '@atproto/lex-json'
import { BlockMap, blocksToCarFile, concatBytes, getRecords, writeCarStream } from '@atproto/repo'
import type { Db } from '../db/client'
import { getRecordRow, listRecordRows } from '../db/records'
import { getBlockBytes, pageSnapshotBlocks, type RootRow } from '../db/repo'
import { D1Blockstore } from './storage'

export interface RecordView {
  uri: string
  cid: string
  value: unknown
}

const PAGE_SIZE = 1000

const toView = (row: { uri: string; cid: string; content: Uint8Array }): RecordView => ({
  uri: row.uri,
  cid: row.cid,
  value: lexToJson(decode(row.content)),
})

export const readRecord = async (db: Db, uri: string, cid?: string): Promise<RecordView | null> => {
  const row = await getRecordRow(db, uri)
  if (!row || (cid !== undefined && row.cid !== cid)) return null
  return toView(row)
}

export const listRecords = async (
  db: Db,
  opts: { collection: string; limit: number; reverse: boolean; cursor?: string },
): Promise<{ records: RecordView[]; cursor?: string }> => {
  const rows = await listRecordRows(db, opts)
  const records = rows.map(toView)
  const last = records.at(-1)
  // Like the reference: the cursor is the last rkey whenever a page is non-empty.
  return { records, cursor: last ? last.uri.slice(last.uri.lastIndexOf('/') + 1) : undefined }
}

/** Streams the whole repo (or the blocks newer than `since`) as a CAR rooted at the current commit. */
export const streamRepoCar = (db: Db, root: RootRow, since?: string): ReadableStream<Uint8Array> => {
  async function* blocks() {
    let afterCid = ''
    for (;;) {
      const page = await pageSnapshotBlocks(db, { rev: root.rev, since, afterCid, limit: PAGE_SIZE })
      for (const row of page) yield { cid: parseCid(row.cid), bytes: row.content }
      if (page.length < PAGE_SIZE) return
      afterCid = page[page.length - 1].cid
    }
  }
  return iterableToStream(writeCarStream(parseCid(root.cid), blocks()))
}

/** A CAR proving the presence (or absence) of one record under the current commit. */
export const recordProofCar = async (db: Db, root: RootRow, collection: string, rkey: string): Promise<ReadableStream<Uint8Array>> => {
  const storage = new D1Blockstore(db)
  return iterableToStream(getRecords(storage, parseCid(root.cid), [{ collection, rkey }]))
}

/** A root-less CAR of the given blocks, or the list of CIDs we do not have. */
export const blocksCar = async (db: Db, cids: Cid[]): Promise<{ car: Uint8Array } | { missing: string[] }> => {
  const found = await getBlockBytes(
    db,
    cids.map((c) => c.toString()),
  )
  const missing = cids.filter((c) => !found.has(c.toString())).map((c) => c.toString())
  if (missing.length > 0) return { missing }
  const blocks = new BlockMap()
  for (const cid of cids) blocks.set(cid, found.get(cid.toString())!)
  return { car: await blocksToCarFile(null, blocks) }
}

/** CAR writers yield a few hundred bytes at a time; the stream gets ~64 KiB pieces instead. */
const STREAM_CHUNK_BYTES = 64 * 1024

async function* coalesce(iterable: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let parts: Uint8Array[] = []
  let size = 0
  const flush = (): Uint8Array => {
    const out = concatBytes(parts)
    parts = []
    size = 0
    return out
  }
  for await (const chunk of iterable) {
    parts.push(chunk)
    size += chunk.byteLength
    if (size >= STREAM_CHUNK_BYTES) yield flush()
  }
  if (size > 0) yield flush()
}

const iterableToStream = (iterable: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> => {
  const iterator = coalesce(iterable)[Symbol.asyncIterator]()
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await iterator.next()
      if (done) controller.close()
      else controller.enqueue(value)
    },
    async cancel() {
      await iterator.return?.(undefined)
    },
  })
}
