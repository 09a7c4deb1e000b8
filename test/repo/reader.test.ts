/**
 * Repo reads (src/repo/reader.ts): records from the index, paging as the
 * reference PDS pages, and the CAR exports relays verify: the whole repo or
 * the blocks since a rev, a record's inclusion or absence proof, raw blocks.
 */
import { readCar, readCarWithRoot, verifyProofs, verifyRecords } from '@atproto/repo'
import { beforeEach, describe, expect, it } from 'vitest'
import { getRoot } from '../../src/db/repo'
import { commitWrites } from '../../src/repo/commit'
import { prepareCreate } from '../../src/repo/prepare'
import { blocksCar, listRecords, readRecord, recordProofCar, streamRepoCar } from '../../src/repo/reader'
import { collectBytes, newRepoContext, prepareThing, THING, wipeDatabase } from './fixtures'

beforeEach(wipeDatabase)

describe('records', () => {
  it('readRecord returns the value as JSON, or null for a missing record or another CID', async () => {
    const ctx = await newRepoContext()
    const w = await prepareThing(ctx.did, { nested: [1, 'two'] }, 'r1')
    await commitWrites(ctx, [w])
    expect(await readRecord(ctx.db, w.uri)).toEqual({ uri: w.uri, cid: w.cid.toString(), value: { $type: THING, value: { nested: [1, 'two'] } } })
    expect(await readRecord(ctx.db, w.uri, w.cid.toString())).not.toBeNull()
    const other = await prepareThing(ctx.did, 'other')
    expect(await readRecord(ctx.db, w.uri, other.cid.toString())).toBeNull()
    expect(await readRecord(ctx.db, `at://${ctx.did}/${THING}/missing`)).toBeNull()
  })

  it('listRecords pages newest rkey first with a cursor, or oldest first with reverse', async () => {
    const ctx = await newRepoContext()
    await commitWrites(ctx, await Promise.all(['a', 'b', 'c', 'd', 'e'].map((k) => prepareThing(ctx.did, k, k))))
    await commitWrites(ctx, [await prepareCreate({ did: ctx.did, collection: 'com.example.other', rkey: 'c', record: {} })])
    const rkeys = (page: { records: { uri: string }[] }) => page.records.map((r) => r.uri.split('/').pop())

    const first = await listRecords(ctx.db, { collection: THING, limit: 2, reverse: false })
    expect(rkeys(first)).toEqual(['e', 'd'])
    expect(first.cursor).toBe('d')
    const second = await listRecords(ctx.db, { collection: THING, limit: 2, reverse: false, cursor: first.cursor })
    expect(rkeys(second)).toEqual(['c', 'b'])
    const last = await listRecords(ctx.db, { collection: THING, limit: 2, reverse: false, cursor: second.cursor })
    expect(rkeys(last)).toEqual(['a'])
    const empty = await listRecords(ctx.db, { collection: THING, limit: 2, reverse: false, cursor: 'a' })
    expect(empty).toEqual({ records: [], cursor: undefined })

    expect(rkeys(await listRecords(ctx.db, { collection: THING, limit: 10, reverse: true }))).toEqual(['a', 'b', 'c', 'd', 'e'])
    expect(rkeys(await listRecords(ctx.db, { collection: THING, limit: 10, reverse: true, cursor: 'b' }))).toEqual(['c', 'd', 'e'])
  })
})

describe('CAR exports', () => {
  it('streamRepoCar with since holds only the blocks written after that rev', async () => {
    const ctx = await newRepoContext()
    const a = await prepareThing(ctx.did, 'a', 'a')
    const c1 = (await commitWrites(ctx, [a]))!
    const b = await prepareThing(ctx.did, 'b', 'b')
    const c2 = (await commitWrites(ctx, [b]))!

    const diff = await readCarWithRoot(await collectBytes(streamRepoCar(ctx.db, (await getRoot(ctx.db))!, c1.rev)))
    expect(diff.root.equals(c2.cid)).toBe(true)
    expect(diff.blocks.has(c2.cid)).toBe(true)
    expect(diff.blocks.has(b.cid)).toBe(true)
    expect(diff.blocks.has(a.cid)).toBe(false)
    expect(diff.blocks.has(c1.cid)).toBe(false)

    const full = await readCarWithRoot(await collectBytes(streamRepoCar(ctx.db, (await getRoot(ctx.db))!)))
    expect(full.blocks.has(a.cid)).toBe(true)
    expect(full.blocks.size).toBeGreaterThan(diff.blocks.size)
  })

  it('recordProofCar proves a record present and another absent', async () => {
    const ctx = await newRepoContext()
    const w = await prepareThing(ctx.did, 'proved', 'p')
    await commitWrites(ctx, [w, await prepareThing(ctx.did, 'neighbour', 'q')])
    const root = (await getRoot(ctx.db))!
    const didKey = ctx.signingKey.did()

    const present = await collectBytes(await recordProofCar(ctx.db, root, THING, 'p'))
    const claims = await verifyRecords(present, ctx.did, didKey)
    expect(claims).toEqual([{ collection: THING, rkey: 'p', record: w.record }])

    const absent = await collectBytes(await recordProofCar(ctx.db, root, THING, 'nope'))
    const checked = await verifyProofs(absent, [{ collection: THING, rkey: 'nope', cid: null }], ctx.did, didKey)
    expect(checked.verified).toHaveLength(1)
    expect(checked.unverified).toHaveLength(0)
  })

  it('blocksCar returns the blocks asked for, or lists the missing ones', async () => {
    const ctx = await newRepoContext()
    const w = await prepareThing(ctx.did, 'blk', 'b')
    const c = (await commitWrites(ctx, [w]))!
    const found = await blocksCar(ctx.db, [w.cid, c.cid])
    if (!('car' in found)) throw new Error('expected a CAR')
    const car = await readCar(found.car)
    expect(car.roots).toEqual([]) // root-less, as getBlocks answers
    expect(car.blocks.get(w.cid)).toEqual(w.bytes)
    expect(car.blocks.has(c.cid)).toBe(true)
    const missing = (await prepareThing(ctx.did, 'never stored')).cid
    expect(await blocksCar(ctx.db, [w.cid, missing])).toEqual({ missing: [missing.toString()] })
  })
})
