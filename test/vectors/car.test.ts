/**
 * CAR vectors `extra-atproto-repo/car-file-fixtures.json` (from the
 * reference implementation's repo tests; https://atproto.com/specs/repository#car-file-serialization):
 * a CAR v1 file with one root and its blocks. Checks that `@atproto/repo`
 * reads it back (verifying each block's CID) and writes the identical bytes,
 * since `sync.getRepo` / `getBlocks` / firehose frames are built that way.
 */
import { cidForCbor, parseCid } from '@atproto/lex-data'
import { BlockMap, blocksToCarFile, readCarWithRoot } from '@atproto/repo'
import fixturesJson from '@vectors/extra-atproto-repo/car-file-fixtures.json'
import { describe, expect, it } from 'vitest'
import { errorOf, fromBase64 } from './vectors'

interface CarFixture {
  root: string
  blocks: { cid: string; bytes: string }[]
  car: string
}
const fixtures = fixturesJson as CarFixture[]

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((byte, i) => byte === b[i])

const checkFixture = async (fixture: CarFixture): Promise<string[]> => {
  const problems: string[] = []
  const car = fromBase64(fixture.car)
  const blocks = new BlockMap()
  for (const block of fixture.blocks) {
    const bytes = fromBase64(block.bytes)
    const cid = await cidForCbor(bytes)
    if (cid.toString() !== block.cid) problems.push(`block ${block.cid} hashes to ${cid}`)
    blocks.set(parseCid(block.cid), bytes)
  }

  const readError = await errorOf(async () => {
    const read = await readCarWithRoot(car)
    if (read.root.toString() !== fixture.root) throw new Error(`root ${read.root}`)
    if (!read.blocks.equals(blocks)) throw new Error('blocks differ from the fixture blocks')
  })
  if (readError !== null) problems.push(`readCarWithRoot: ${readError}`)

  const written = await blocksToCarFile(parseCid(fixture.root), blocks)
  if (!bytesEqual(written, car)) problems.push('blocksToCarFile does not reproduce the fixture bytes')
  return problems
}

describe('interop vectors: CAR files', () => {
  it('read back with root and blocks, written byte-identical', async () => {
    expect(fixtures.length).toBeGreaterThan(0)
    const failures: string[] = []
    for (const [i, fixture] of fixtures.entries()) {
      for (const problem of await checkFixture(fixture)) failures.push(`fixture ${i} (${fixture.root}): ${problem}`)
    }
    expect(failures).toEqual([])
  })
})
