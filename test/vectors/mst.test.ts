/**
 * Interop vectors `mst/*` (https://atproto.com/specs/repository#mst-structure):
 * key heights (leading zero bits of SHA-256, counted in 2-bit chunks) and
 * the common-prefix length used for key compression, via `@atproto/repo`.
 */
import { mstUtil } from '@atproto/repo'
import commonPrefixJson from '@vectors/mst/common_prefix.json'
import exampleKeysText from '@vectors/mst/example_keys.txt?raw'
import keyHeightsJson from '@vectors/mst/key_heights.json'
import { describe, expect, it } from 'vitest'
import { show } from './vectors'

const keyHeights = keyHeightsJson as { key: string; height: number }[]
const commonPrefix = commonPrefixJson as { left: string; right: string; len: number }[]
const exampleKeys = exampleKeysText.split('\n').filter((line) => line !== '')

describe('interop vectors: MST', () => {
  it('key_heights: layer of each key', async () => {
    expect(keyHeights.length).toBeGreaterThan(0)
    const failures: string[] = []
    for (const { key, height } of keyHeights) {
      const got = await mstUtil.leadingZerosOnHash(key)
      if (got !== height) failures.push(`${show(key)}: expected ${height}, got ${got}`)
    }
    expect(failures).toEqual([])
  })

  it('common_prefix: shared prefix length of two keys', () => {
    expect(commonPrefix.length).toBeGreaterThan(0)
    const failures: string[] = []
    for (const { left, right, len } of commonPrefix) {
      const got = mstUtil.countPrefixLen(left, right)
      if (got !== len) failures.push(`${show(left)} vs ${show(right)}: expected ${len}, got ${got}`)
    }
    expect(failures).toEqual([])
  })

  // The generator names each key "<letter><layer>/<digits>", so the second
  // character is the height the key must land on.
  it('example_keys: valid MST keys on the layer their name gives', async () => {
    expect(exampleKeys.length).toBeGreaterThan(0)
    const failures: string[] = []
    for (const key of exampleKeys) {
      const expected = Number(key[1])
      const got = await mstUtil.leadingZerosOnHash(key)
      if (!mstUtil.isValidMstKey(key)) failures.push(`${show(key)}: not a valid MST key`)
      if (got !== expected) failures.push(`${show(key)}: expected layer ${expected}, got ${got}`)
    }
    expect(failures).toEqual([])
  })
})
