/**
 * readCarStream (src/repo/import/car-stream.ts): a CAR v1 body read as it
 * streams in. The blocks must not depend on where the network cut the body;
 * every way of cutting a CAR short is refused with the truncation message,
 * except at a block boundary (a shorter CAR is a well-formed CAR: the missing
 * blocks are the tree walk's business); each block is checked against its
 * CID; headers and length prefixes an attacker controls are bounded.
 * `@atproto/repo`'s reader of the same bytes is the reference.
 */
import { createCid, RAW_DATA_CODEC, SHA512_HASH_CODE, cidForRawBytes, CBOR_DATA_CODEC } from '@atproto/lex-data'
import { readCar } from '@atproto/repo'
import { describe, expect, it } from 'vitest'
import { type CarBlock, InvalidImportError, readCarStream } from '../../../src/repo/import/car-stream'
import { buildRepo, carHeader, cborBlock, chunkedStream, concat, handCar, section, THING, things, varint } from './fixtures'

const DID = 'did:plc:carstreamtest000000000000'
const TRUNCATED = 'The CAR file ends in the middle of a block (truncated)'

/** Reads a whole body; returns the root and every block in order. */
const readAll = async (body: ReadableStream<Uint8Array>): Promise<{ root: string; blocks: CarBlock[] }> => {
  const { root, blocks } = await readCarStream(body)
  const out: CarBlock[] = []
  for await (const block of blocks) out.push(block)
  return { root, blocks: out }
}

const readBytes = (car: Uint8Array, sizes?: number[]) => readAll(chunkedStream(car, sizes))

/** The InvalidImportError message reading `car` ends with (fails the test on any other outcome). */
const refusalOf = async (car: Uint8Array, sizes?: number[]): Promise<string> => {
  const err = await readBytes(car, sizes).then(
    () => null,
    (e: unknown) => e,
  )
  expect(err, 'expected the CAR to be refused').toBeInstanceOf(InvalidImportError)
  return (err as Error).message
}

const asEntries = (blocks: CarBlock[]): [string, string][] =>
  blocks.map((b) => [b.cid, Array.from(b.bytes, (x) => x.toString(16).padStart(2, '0')).join('')])

/** Offsets where the header and each section end, found by reading the length prefixes directly. */
const boundariesOf = (car: Uint8Array): number[] => {
  const ends: number[] = []
  let at = 0
  while (at < car.byteLength) {
    let length = 0
    let shift = 0
    for (;;) {
      const byte = car[at++]
      length += (byte & 0x7f) * 2 ** shift
      shift += 7
      if (byte < 0x80) break
    }
    at += length
    ends.push(at)
  }
  return ends
}

describe('readCarStream on well-formed CARs', () => {
  it('yields the blocks the reference reader finds, wherever the body is cut into chunks', async () => {
    const { repo, car } = await buildRepo(DID, things(40))
    const reference = await readCar(car)
    const expected = reference.blocks.entries().map((e) => [e.cid.toString(), Array.from(e.bytes, (x) => x.toString(16).padStart(2, '0')).join('')])
    const whole = await readBytes(car)
    expect(whole.root).toBe(repo.cid.toString())
    expect(reference.roots.map(String)).toEqual([whole.root])
    expect(asEntries(whole.blocks).sort()).toEqual(expected.sort())
    for (const sizes of [[1], [2], [3, 5, 7], [13], [100, 1], [4096]]) {
      const read = await readBytes(car, sizes)
      expect(read.root, `chunks ${sizes}`).toBe(whole.root)
      expect(asEntries(read.blocks), `chunks ${sizes}`).toEqual(asEntries(whole.blocks))
    }
    expect(whole.blocks.every((b) => b.codec === CBOR_DATA_CODEC)).toBe(true)
  })

  it('accepts raw blocks, and reports their codec', async () => {
    const bytes = new TextEncoder().encode('raw bytes')
    const raw = { cid: await cidForRawBytes(bytes), bytes }
    const read = await readBytes(handCar([raw.cid], [raw]))
    expect(read.blocks).toEqual([{ cid: raw.cid.toString(), codec: RAW_DATA_CODEC, bytes }])
  })
})

describe('readCarStream refusals', () => {
  it('a CAR cut anywhere but a block boundary is truncated; at a boundary it just holds fewer blocks', async () => {
    const { car } = await buildRepo(DID, things(3))
    const ends = boundariesOf(car)
    const headerEnd = ends[0]
    // The commit (over 127 bytes) has a two-byte length prefix, so some cut lands mid-varint.
    const midVarint = ends.slice(0, -1).filter((end) => car[end] >= 0x80)
    expect(midVarint.length).toBeGreaterThan(0)
    for (let cut = 1; cut < car.byteLength; cut++) {
      const prefix = car.subarray(0, cut)
      const sectionsBefore = ends.indexOf(cut)
      if (sectionsBefore >= 0) {
        expect((await readBytes(prefix, [5])).blocks.length, `cut at ${cut}`).toBe(sectionsBefore)
      } else {
        expect(await refusalOf(prefix, [5]), `cut at ${cut} (header ends at ${headerEnd})`).toBe(TRUNCATED)
      }
    }
    for (const end of midVarint) expect(await refusalOf(car.subarray(0, end + 1))).toBe(TRUNCATED)
  })

  it('an empty body or a zero-length header is not a CAR', async () => {
    expect(await refusalOf(new Uint8Array(0))).toBe('The body is not a CAR file (no header)')
    expect(await refusalOf(Uint8Array.of(0))).toBe('The body is not a CAR file (no header)')
  })

  it('a header that is not dag-cbor, not version 1, or without exactly one root', async () => {
    const block = await cborBlock({ $type: THING })
    expect(await refusalOf(concat(varint(3), Uint8Array.of(0xff, 0xff, 0xff)))).toBe('The body is not a CAR file (unreadable header)')
    expect(await refusalOf(concat(carHeader({ version: 2, roots: [block.cid] }), section(block.cid.bytes, block.bytes)))).toBe(
      'Only CAR version 1 is supported',
    )
    expect(await refusalOf(carHeader({ roots: [block.cid] }))).toBe('Only CAR version 1 is supported')
    // The reference reader accepts any number of roots; its importRepo then answers "expected one root", as we do.
    expect((await readCar(handCar([], [block]))).roots).toEqual([])
    expect(await refusalOf(handCar([], [block]))).toBe('expected one root')
    expect(await refusalOf(handCar([block.cid, block.cid], [block]))).toBe('expected one root')
    expect(await refusalOf(carHeader({ version: 1 }))).toBe('expected one root')
  })

  it('a block whose bytes do not hash to its CID', async () => {
    const block = await cborBlock({ $type: THING, text: 'original' })
    const forged = (await cborBlock({ $type: THING, text: 'forged!!' })).bytes
    const good = await cborBlock({ $type: THING, text: 'fine' })
    const car = concat(carHeader({ version: 1, roots: [good.cid] }), section(good.cid.bytes, good.bytes), section(block.cid.bytes, forged))
    expect(await refusalOf(car)).toBe(`Block ${block.cid} does not match its CID`)
    // One flipped bit in the last byte of a real block.
    const flipped = block.bytes.slice()
    flipped[flipped.length - 1] ^= 1
    expect(await refusalOf(handCar([block.cid], [{ cid: block.cid, bytes: flipped }]))).toBe(`Block ${block.cid} does not match its CID`)
  })

  it('CIDs atproto does not use, and sections that do not start with a CID', async () => {
    const block = await cborBlock({ $type: THING })
    const sha512 = createCid(CBOR_DATA_CODEC, SHA512_HASH_CODE, new Uint8Array(64))
    expect(await refusalOf(handCar([block.cid], [{ cid: sha512, bytes: block.bytes }]))).toBe(
      `Unsupported block CID ${sha512} (atproto repos use CIDv1, sha-256, dag-cbor or raw)`,
    )
    const dagPb = createCid(0x70, 0x12, block.cid.multihash.digest)
    expect(await refusalOf(handCar([block.cid], [{ cid: dagPb, bytes: block.bytes }]))).toMatch(/^Unsupported block CID .* \(atproto repos use/)
    // CIDv0: a bare sha-256 multihash.
    const v0 = concat(Uint8Array.of(0x12, 0x20), block.cid.multihash.digest)
    expect(await refusalOf(concat(carHeader({ version: 1, roots: [block.cid] }), section(v0, block.bytes)))).toMatch(/^Unsupported block CID Qm/)
    const garbage = concat(carHeader({ version: 1, roots: [block.cid] }), section(Uint8Array.of(0x05, 0x01), block.bytes))
    expect(await refusalOf(garbage)).toBe('A CAR section starts with an invalid CID')
  })

  it('length prefixes: too long a varint, a header over 64 KiB, empty and oversized sections', async () => {
    const head = carHeader({ version: 1, roots: [(await cborBlock({ $type: THING })).cid] })
    const tenByteVarint = Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01)
    expect(await refusalOf(tenByteVarint)).toBe('The CAR file has a malformed length prefix')
    expect(await refusalOf(concat(head, tenByteVarint))).toBe('The CAR file has a malformed length prefix')
    expect(await refusalOf(concat(varint(64 * 1024 + 1), new Uint8Array(10)))).toBe('The body is not a CAR file (no header)')
    expect(await refusalOf(concat(head, varint(0)))).toBe('A CAR section of 0 bytes is not a block this PDS can store')
    // Refused from the prefix alone: the 2 MB are never awaited.
    expect(await refusalOf(concat(head, varint(2_000_001)))).toBe('A CAR section of 2000001 bytes is not a block this PDS can store')
    const hugeNineBytes = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)
    expect(await refusalOf(concat(head, hugeNineBytes))).toMatch(/^A CAR section of \d+ bytes is not a block this PDS can store$/)
  })
})
