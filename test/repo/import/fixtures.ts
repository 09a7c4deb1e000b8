/**
 * Builders for the tests of src/repo/import and src/db/import.ts. Repos are
 * made by `@atproto/repo` (an implementation independent of ours) under a key
 * of their own, as the old PDS of a migration would sign them; malformed CARs
 * are assembled by hand, byte by byte, so the reader under test is never used
 * to build its own input. `importTables` snapshots every row an import may
 * touch, so a refusal can be checked to have changed nothing at all.
 */
import { Secp256k1Keypair } from '@atproto/crypto'
import { encode } from '@atproto/lex-cbor'
import { cidForCbor, type Cid, type LexMap } from '@atproto/lex-data'
import { concatBytesAsync, getFullRepo, MemoryBlockstore, Repo, WriteOpAction, type RecordCreateOp, type RecordWriteOp } from '@atproto/repo'
import { expect } from 'vitest'
import { openDb } from '../../../src/db/client'
import { toXrpcError } from '../../../src/http/errors'
import { InvalidImportError, type ImportContext } from '../../../src/repo/import/import-repo'
import { testConfig, wipeDatabase, workerEnv } from '../fixtures'

export interface RecordSpec {
  collection: string
  rkey: string
  record: LexMap
}

/** A repo built by `@atproto/repo` in memory, with the key that signs it and its full CAR. */
export interface BuiltRepo {
  repo: Repo
  storage: MemoryBlockstore
  keypair: Secp256k1Keypair
  car: Uint8Array
}

/** The CAR `com.atproto.sync.getRepo` of the old PDS would send: the commit and every reachable block. */
export const fullCar = (storage: MemoryBlockstore, root: Cid): Promise<Uint8Array> => concatBytesAsync(getFullRepo(storage, root))

const createOps = (records: RecordSpec[]): RecordCreateOp[] =>
  records.map((r) => ({ action: WriteOpAction.Create, collection: r.collection, rkey: r.rkey, record: r.record }) as RecordCreateOp)

export const buildRepo = async (did: string, records: RecordSpec[], keypair?: Secp256k1Keypair): Promise<BuiltRepo> => {
  const key = keypair ?? (await Secp256k1Keypair.create())
  const storage = new MemoryBlockstore()
  const repo = await Repo.create(storage, did, key, createOps(records))
  return { repo, storage, keypair: key, car: await fullCar(storage, repo.cid) }
}

/** The next version of a built repo (same storage, same key). */
export const applyWrites = async (built: BuiltRepo, writes: RecordWriteOp[]): Promise<BuiltRepo> => {
  const repo = await built.repo.applyWrites(writes, built.keypair)
  return { ...built, repo, car: await fullCar(built.storage, repo.cid) }
}

export const THING = 'com.example.thing'

/** `count` small records of a collection no lexicon knows, rkeys `t0000`, `t0001`, ... */
export const things = (count: number, from = 0): RecordSpec[] =>
  Array.from({ length: count }, (_, i) => ({
    collection: THING,
    rkey: `t${String(from + i).padStart(4, '0')}`,
    record: { $type: THING, n: from + i },
  }))

/** Unsigned LEB128, as CAR length prefixes are written. */
export const varint = (n: number): Uint8Array => {
  const out: number[] = []
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    out.push(byte)
  } while (n > 0)
  return Uint8Array.from(out)
}

export const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.byteLength
  }
  return out
}

/** A length-prefixed CAR section: CID bytes then block bytes. */
export const section = (cidBytes: Uint8Array, bytes: Uint8Array): Uint8Array =>
  concat(varint(cidBytes.byteLength + bytes.byteLength), cidBytes, bytes)

/** A CAR header: varint length + dag-cbor `header` (normally `{version: 1, roots: [cid]}`). */
export const carHeader = (header: unknown): Uint8Array => {
  const bytes = encode(header as never)
  return concat(varint(bytes.byteLength), bytes)
}

/** A CAR v1 assembled by hand: `{version: 1, roots}` and the blocks in the order given. */
export const handCar = (roots: Cid[], blocks: { cid: Cid; bytes: Uint8Array }[]): Uint8Array =>
  concat(carHeader({ version: 1, roots }), ...blocks.map((b) => section(b.cid.bytes, b.bytes)))

export const cborBlock = async (value: unknown): Promise<{ cid: Cid; bytes: Uint8Array }> => {
  const bytes = encode(value as never)
  return { cid: await cidForCbor(bytes), bytes }
}

/** A body that arrives in chunks of the given sizes (cycled), as a network would cut it. */
export const chunkedStream = (bytes: Uint8Array, sizes: number[] = [bytes.byteLength || 1]): ReadableStream<Uint8Array> => {
  let at = 0
  let turn = 0
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.byteLength) return controller.close()
      const size = sizes[turn++ % sizes.length]
      controller.enqueue(bytes.slice(at, at + size))
      at += size
    },
  })
}

/** Every row an import may write, in a stable order (block contents are named by their CIDs). */
export const importTables = async (): Promise<Record<string, unknown[]>> => {
  const queries: Record<string, string> = {
    block: 'SELECT cid, rev, size, removed_rev, removed_at FROM block ORDER BY cid',
    record: 'SELECT * FROM record ORDER BY uri',
    backlink: 'SELECT * FROM backlink ORDER BY uri, path',
    record_blob: 'SELECT * FROM record_blob ORDER BY record_uri, blob_cid',
    blob: 'SELECT * FROM blob ORDER BY cid',
    commit_chain: 'SELECT * FROM commit_chain ORDER BY cid',
    repo_root: 'SELECT * FROM repo_root',
    repo_seq: 'SELECT seq, event_type FROM repo_seq ORDER BY seq',
    import_block: 'SELECT import_id, cid FROM import_block ORDER BY cid',
    import_node: 'SELECT * FROM import_node ORDER BY cid',
    import_record: 'SELECT * FROM import_record ORDER BY uri',
  }
  const names = Object.keys(queries)
  const results = await workerEnv.DB.batch(names.map((n) => workerEnv.DB.prepare(queries[n])))
  return Object.fromEntries(names.map((n, i) => [n, results[i].results]))
}

export const stagingCounts = async (): Promise<{ blocks: number; nodes: number; records: number }> =>
  (await workerEnv.DB.prepare(
    'SELECT (SELECT count(*) FROM import_block) AS blocks, (SELECT count(*) FROM import_node) AS nodes, (SELECT count(*) FROM import_record) AS records',
  ).first()) as { blocks: number; nodes: number; records: number }

/**
 * No repo, and the account deactivated, as a deployment waiting for its
 * migration is: only then may imported records reference blobs not yet
 * uploaded (the record_blob trigger of migrations/0008).
 */
export const resetForImport = async (): Promise<string> => {
  await wipeDatabase()
  await workerEnv.DB.batch([workerEnv.DB.prepare('DELETE FROM record_blob'), workerEnv.DB.prepare('DELETE FROM blob')])
  const { did, handle } = await testConfig()
  await workerEnv.DB.prepare("INSERT INTO account (did, handle, status, created_at) VALUES (?, ?, 'deactivated', ?)")
    .bind(did, handle, new Date().toISOString())
    .run()
  return did
}

/** What importRepo is given by the handler: this PDS's DID, and the key its DID document lists (here fixed). */
export const importContext = async (documentKey: string): Promise<ImportContext> => ({
  db: openDb(workerEnv.DB),
  did: (await testConfig()).did,
  currentKey: async () => documentKey,
})

/**
 * Awaits a refusal and checks it end to end: an InvalidImportError whose
 * message matches, which the edge answers as 400 InvalidRequest with that
 * same message (what the migrating client sees).
 */
export const expectRefusal = async (work: Promise<unknown>, message: string | RegExp): Promise<InvalidImportError> => {
  const err = await work.then(
    () => null,
    (e: unknown) => e,
  )
  expect(err, 'expected a refusal').toBeInstanceOf(InvalidImportError)
  const refusal = err as InvalidImportError
  if (typeof message === 'string') expect(refusal.message).toBe(message)
  else expect(refusal.message).toMatch(message)
  const xrpc = toXrpcError(refusal)
  expect({ status: xrpc.status, ...xrpc.body }).toEqual({ status: 400, error: 'InvalidRequest', message: refusal.message })
  return refusal
}
