/**
 * Interop vectors `firehose/commit-proof-fixtures.json`
 * (https://atproto.com/specs/sync#commit-validation): the MST blocks a
 * `#commit` event must carry so a relay can check each operation and invert
 * the commit back to the previous root (`prevData`).
 *
 * Each fixture is an MST of `keys` (all pointing at `leafValue`) with root
 * `rootBeforeCommit`; applying `adds` and `dels` gives `rootAfterCommit`,
 * and `blocksInProof` is the set of MST node blocks the event needs: the
 * covering proof of every changed key in the new tree. Built with
 * `@atproto/repo`'s MST on a MemoryBlockstore.
 */
import { parseCid } from '@atproto/lex-data'
import { BlockMap, MST, MemoryBlockstore } from '@atproto/repo'
import fixturesJson from '@vectors/firehose/commit-proof-fixtures.json'
import { describe, expect, it } from 'vitest'
import { errorOf } from './vectors'

interface CommitProofFixture {
  comment: string
  leafValue: string
  keys: string[]
  adds: string[]
  dels: string[]
  rootBeforeCommit: string
  rootAfterCommit: string
  blocksInProof: string[]
}
const fixtures = fixturesJson as CommitProofFixture[]

const sortedCids = (blocks: BlockMap): string[] => [...blocks.cids()].map(String).sort()

/** Checks one fixture; returns what went wrong (empty if nothing). */
const checkFixture = async (fixture: CommitProofFixture): Promise<string[]> => {
  const problems: string[] = []
  const leaf = parseCid(fixture.leafValue)

  let mst = await MST.create(new MemoryBlockstore())
  for (const key of fixture.keys) mst = await mst.add(key, leaf)
  const before = (await mst.getPointer()).toString()
  if (before !== fixture.rootBeforeCommit) problems.push(`root before commit ${before}, expected ${fixture.rootBeforeCommit}`)

  for (const key of fixture.adds) mst = await mst.add(key, leaf)
  for (const key of fixture.dels) mst = await mst.delete(key)
  const after = (await mst.getPointer()).toString()
  if (after !== fixture.rootAfterCommit) problems.push(`root after commit ${after}, expected ${fixture.rootAfterCommit}`)

  const proof = new BlockMap()
  for (const key of [...fixture.adds, ...fixture.dels]) proof.addMap(await mst.getCoveringProof(key))
  const got = sortedCids(proof)
  const expected = [...fixture.blocksInProof].sort()
  if (got.join() !== expected.join()) {
    problems.push(`proof blocks ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`)
  }

  // The proof must be enough on its own: load the new tree from the proof
  // blocks only and undo the operations, as a relay checking the event does.
  const inversionError = await errorOf(async () => {
    const storage = new MemoryBlockstore()
    await storage.putMany(proof)
    let inverted = MST.load(storage, parseCid(fixture.rootAfterCommit))
    for (const key of fixture.adds) inverted = await inverted.delete(key)
    for (const key of fixture.dels) inverted = await inverted.add(key, leaf)
    const root = (await inverted.getPointer()).toString()
    if (root !== fixture.rootBeforeCommit) throw new Error(`inverted root ${root}`)
  })
  if (inversionError !== null) problems.push(`inverting from the proof blocks failed: ${inversionError}`)

  return problems
}

describe('interop vectors: firehose commit proofs', () => {
  it('roots and proof blocks match, and the proof inverts the commit', async () => {
    expect(fixtures.length).toBeGreaterThan(0)
    const failures: string[] = []
    for (const fixture of fixtures) {
      for (const problem of await checkFixture(fixture)) failures.push(`${fixture.comment}: ${problem}`)
    }
    expect(failures).toEqual([])
  })
})
