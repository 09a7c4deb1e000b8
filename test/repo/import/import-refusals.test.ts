/**
 * What importRepo (src/repo/import/import-repo.ts) must refuse, against the
 * real local D1, and that a refusal changes nothing: a repo is already
 * imported, and after each refused CAR every row of the repo, the record
 * index, the blobs and the commit chain is exactly as before, and no staging
 * row survives. Each refusal is an InvalidImportError with the message the
 * migrating client sees in a 400 InvalidRequest (see `expectRefusal`).
 */
import { Secp256k1Keypair } from '@atproto/crypto'
import { TID } from '@atproto/common-web'
import { type Cid, cidForCbor } from '@atproto/lex-data'
import { blocksToCarFile, readCar, signCommit, WriteOpAction, type MST } from '@atproto/repo'
import { beforeEach, describe, expect, it } from 'vitest'
import { type Db, openDb } from '../../../src/db/client'
import { getRoot } from '../../../src/db/repo'
import { clearStagingStatements } from '../../../src/db/import'
import { importRepo } from '../../../src/repo/import/import-repo'
import { liveAndReachableBlocks, workerEnv } from '../fixtures'
import {
  applyWrites,
  buildRepo,
  type BuiltRepo,
  cborBlock,
  chunkedStream,
  expectRefusal,
  handCar,
  importContext,
  importTables,
  resetForImport,
  stagingCounts,
  THING,
  things,
} from './fixtures'
import { follow } from './records'

let did: string
let base: BuiltRepo
/** A newer version of `base`: what each test damages. */
let newer: BuiltRepo
let before: Record<string, unknown[]>

beforeEach(async () => {
  did = await resetForImport()
  base = await buildRepo(did, [...things(300), follow('3kfollow00001', 'did:plc:friend00000000000000000000')])
  await importRepo(await importContext(base.keypair.did()), chunkedStream(base.car))
  newer = await applyWrites(base, [
    { action: WriteOpAction.Create, collection: THING, rkey: 'new1', record: { $type: THING, n: 'new' } },
    { action: WriteOpAction.Delete, collection: THING, rkey: 't0001' },
  ])
  before = await importTables()
  expect((before.record as unknown[]).length).toBe(301)
})

/** Imports `car` with the DID document listing `key` (default: the repo's own key); expects the refusal and an unchanged database. */
const expectRefused = async (car: Uint8Array, message: string | RegExp, key = base.keypair.did()): Promise<void> => {
  await expectRefusal(importRepo(await importContext(key), chunkedStream(car, [1000])), message)
  expect(await importTables()).toEqual(before)
}

/** `newer`'s CAR without some of its blocks. */
const newerWithout = async (...cids: Cid[]): Promise<Uint8Array> => {
  const { blocks } = await readCar(newer.car)
  for (const cid of cids) {
    expect(blocks.has(cid)).toBe(true)
    blocks.delete(cid)
  }
  return blocksToCarFile(newer.repo.cid, blocks)
}

const anySubtree = async (): Promise<Cid> => {
  const subtree = (await newer.repo.data.getEntries()).find((e): e is MST => e.isTree())
  if (!subtree) throw new Error('the root node has no subtree')
  return subtree.getPointer()
}

describe('an incomplete tree', () => {
  it('a CAR without one MST node', async () => {
    const node = await anySubtree()
    await expectRefused(await newerWithout(node), `The CAR does not hold the whole repo: MST node ${node} missing`)
  })

  it("a CAR without the commit's MST root", async () => {
    const data = newer.repo.commit.data
    await expectRefused(await newerWithout(data), `The CAR does not hold the whole repo: MST node ${data} missing`)
  })

  it('a CAR without one record block', async () => {
    const cid = (await newer.repo.data.get(`${THING}/t0005`))!
    await expectRefused(await newerWithout(cid), `The CAR does not hold the whole repo: record at://${did}/${THING}/t0005 (${cid}) missing`)
  })

  it('a CAR cut short', async () => {
    await expectRefused(newer.car.slice(0, Math.floor(newer.car.byteLength * 0.6)), /^The CAR file ends in the middle of a block \(truncated\)$|^The CAR does not hold the whole repo/)
  })

  it('a tree that holds the same record path twice (in two nodes, each in order by itself)', async () => {
    const record = await cborBlock({ $type: THING, n: 'twice' })
    const entry = { p: 0, k: new TextEncoder().encode(`${THING}/twice`), v: record.cid, t: null }
    const child = await cborBlock({ l: null, e: [entry] })
    const root = await cborBlock({ l: child.cid, e: [entry] })
    const commit = await cborBlock(await signCommit({ did, version: 3, data: root.cid, rev: TID.nextStr(newer.repo.commit.rev), prev: null }, base.keypair))
    await expectRefused(handCar([commit.cid], [commit, root, child, record]), 'The repo holds the same record path twice (not a valid MST)')
  })
})

describe('the commit', () => {
  it('signed by another key than the DID document lists', async () => {
    const listed = (await Secp256k1Keypair.create()).did()
    await expectRefused(newer.car, `The repo's commit is not signed by the key in the DID document of ${did} (${listed})`, listed)
    // And the other way round: a repo of this DID made and signed by someone else.
    const forged = await buildRepo(did, things(3), await Secp256k1Keypair.create())
    await expectRefused(forged.car, `The repo's commit is not signed by the key in the DID document of ${did} (${base.keypair.did()})`)
  })

  it("another DID's repo", async () => {
    const other = 'did:plc:someoneelse000000000000000'
    const foreign = await buildRepo(other, things(3), base.keypair)
    await expectRefused(foreign.car, `The repo in this CAR belongs to ${other}, not to this PDS's account ${did}`)
  })

  it('an older repo than the one here', async () => {
    await importRepo(await importContext(base.keypair.did()), chunkedStream(newer.car))
    before = await importTables()
    await expectRefused(base.car, `The repo here (rev ${newer.repo.commit.rev}) is newer than this CAR (rev ${base.repo.commit.rev})`)
  })

  it('missing, not a commit, or not version 3', async () => {
    await expectRefused(await newerWithout(newer.repo.cid), `The CAR does not hold its root commit ${newer.repo.cid}`)
    const { blocks } = await readCar(newer.car)
    const recordCid = (await newer.repo.data.get(`${THING}/t0005`))!
    await expectRefused(await blocksToCarFile(recordCid, blocks), 'The CAR root is not a repo commit')
    const unsigned = { did, version: 2, data: newer.repo.commit.data, rev: TID.nextStr(newer.repo.commit.rev), prev: null }
    const v2 = await cborBlock(await signCommit(unsigned as never, base.keypair))
    blocks.set(v2.cid, v2.bytes)
    await expectRefused(await blocksToCarFile(v2.cid, blocks), 'Unsupported repo commit version 2 (3 is required)')
  })
})

describe('blocks and bodies', () => {
  it('a block that is not valid dag-cbor, anywhere in the CAR', async () => {
    const bad = await cborBlock({ $type: THING })
    const bytes = Uint8Array.of(...bad.bytes, 0x00) // trailing byte
    const cid = await cidForCbor(bytes)
    const { blocks } = await readCar(newer.car)
    blocks.set(cid, bytes)
    await expectRefused(await blocksToCarFile(newer.repo.cid, blocks), `Block ${cid} is not valid dag-cbor`)
  })

  it('a body that fails mid-way (the client went away): the error passes through, nothing is kept', async () => {
    const half = newer.car.slice(0, newer.car.byteLength >> 1)
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(half)
        controller.error(new Error('client went away'))
      },
    })
    await expect(importRepo(await importContext(base.keypair.did()), body)).rejects.toThrow('client went away')
    expect(await importTables()).toEqual(before)
  })

  it('staging rows left by an abandoned import are cleared by the next one, refused or not', async () => {
    const leftovers = ["import_block (import_id, cid, content) VALUES ('old', 'bafyold', X'00')", "import_node (import_id, cid) VALUES ('old', 'bafyold')"]
    await workerEnv.DB.batch(leftovers.map((sql) => workerEnv.DB.prepare(`INSERT INTO ${sql}`)))
    expect(await stagingCounts()).toMatchObject({ blocks: 1, nodes: 1 })
    await expectRefused(await newerWithout(await anySubtree()), /^The CAR does not hold the whole repo/)
    await workerEnv.DB.batch(leftovers.map((sql) => workerEnv.DB.prepare(`INSERT INTO ${sql}`)))
    await importRepo(await importContext(base.keypair.did()), chunkedStream(newer.car))
    expect(await stagingCounts()).toEqual({ blocks: 0, nodes: 0, records: 0 })
  })
})

/**
 * The import's context with a database that runs `meanwhile` once, just
 * before the final batch (after the import read the root and walked its
 * tree): where another request's work would land.
 */
const interrupted = async (meanwhile: () => Promise<unknown>) => {
  const ctx = await importContext(base.keypair.did())
  let ran = false
  const db: Db = {
    ...ctx.db,
    batchSql: async (statements) => {
      if (!ran && statements.some((s) => 'sql' in s && typeof s.sql === 'string' && s.sql.startsWith('INSERT INTO commit_chain'))) {
        ran = true
        await meanwhile()
      }
      return ctx.db.batchSql(statements)
    },
  }
  return { ctx: { ...ctx, db }, ran: () => ran }
}

describe('concurrent imports', () => {
  it('another import finishing meanwhile: refused, the other import kept intact', async () => {
    const third = await applyWrites(newer, [{ action: WriteOpAction.Create, collection: THING, rkey: 'third', record: { $type: THING, n: 3 } }])
    const otherCtx = await importContext(base.keypair.did())
    const { ctx, ran } = await interrupted(() => importRepo(otherCtx, chunkedStream(third.car)))
    // The commit chain's guard (the rev trigger) speaks first: the root moved.
    await expectRefusal(importRepo(ctx, chunkedStream(newer.car)), 'The repo changed while it was being imported; import again')
    expect(ran()).toBe(true)
    // What the other import made, untouched.
    expect((await getRoot(otherCtx.db))?.cid).toBe(third.repo.cid.toString())
    const records = (await importTables()).record as { uri: string }[]
    expect(records).toHaveLength(302)
    expect(records.some((r) => r.uri === `at://${did}/${THING}/third`)).toBe(true)
    const { live, reachable } = await liveAndReachableBlocks(otherCtx.db)
    expect(live).toEqual(reachable)
    expect(await stagingCounts()).toEqual({ blocks: 0, nodes: 0, records: 0 })
  })

  it('another import starting meanwhile (it clears the staging tables first): refused, nothing changed', async () => {
    // Without a guard the final batch would run on empty staging: every record deleted, the root a commit whose block is not stored.
    const { ctx, ran } = await interrupted(() => openDb(workerEnv.DB).batchSql(clearStagingStatements()))
    await expectRefusal(importRepo(ctx, chunkedStream(newer.car)), 'Another import ran meanwhile and cleared this one; import again')
    expect(ran()).toBe(true)
    expect(await importTables()).toEqual(before)
  })
})
