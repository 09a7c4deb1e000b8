/**
 * Interop vectors `data-model/*.json` (https://atproto.com/specs/data-model):
 * the JSON → DAG-CBOR encoding and CID of records, and which JSON values are
 * valid atproto data.
 *
 * Encoding is checked with the atproto stack (`@atproto/lex-json` →
 * `@atproto/lex-cbor`, which `@atproto/repo` uses for record CIDs) and, as a
 * cross-check, with `@ipld/dag-cbor` + multiformats, both direct dependencies.
 */
import { lexEquals, type LexValue } from '@atproto/lex-data'
import { cidForLex, decode, encode } from '@atproto/lex-cbor'
import { jsonToLex } from '@atproto/lex-json'
import { cidForRecord } from '@atproto/repo'
import * as dagCbor from '@ipld/dag-cbor'
import fixturesJson from '@vectors/data-model/data-model-fixtures.json'
import invalidJson from '@vectors/data-model/data-model-invalid.json'
import validJson from '@vectors/data-model/data-model-valid.json'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { errorOf, fromBase64, show } from './vectors'

interface EncodingFixture {
  json: unknown
  cbor_base64: string
  cid: string
}
interface NotedValue {
  note: string
  json: unknown
}
const fixtures = fixturesJson as EncodingFixture[]
const valid = validJson as NotedValue[]
const invalid = invalidJson as NotedValue[]

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((byte, i) => byte === b[i])

/**
 * Data-model check for an incoming record body: a JSON object whose values
 * are all valid atproto data (integers only, well-formed `$link`, `$bytes`
 * and blob objects, non-empty string `$type`s). `jsonToLex` in strict mode
 * throws on anything else.
 *
 * TODO: replace with the PDS's own record input check once it exists.
 */
const parseRecordData = (json: unknown): LexValue => {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new TypeError('record data must be a JSON object')
  }
  return jsonToLex(json as Parameters<typeof jsonToLex>[0], { strict: true })
}

describe('interop vectors: data model', () => {
  it('fixtures: JSON encodes to the expected DAG-CBOR bytes and CID', async () => {
    expect(fixtures.length).toBeGreaterThan(0)
    const failures: string[] = []
    for (const { json, cbor_base64, cid } of fixtures) {
      const label = show(json)
      const expected = fromBase64(cbor_base64)
      const lex = parseRecordData(json)

      if (!bytesEqual(encode(lex), expected)) failures.push(`lex-cbor bytes differ: ${label}`)
      if ((await cidForLex(lex)).toString() !== cid) failures.push(`lex-cbor CID differs: ${label}`)
      if ((await cidForRecord(lex)).toString() !== cid) failures.push(`@atproto/repo cidForRecord differs: ${label}`)
      if (!lexEquals(decode(expected), lex)) failures.push(`decoding the fixture bytes gives another value: ${label}`)

      const ipldBytes = dagCbor.encode(lex)
      const ipldCid = CID.createV1(dagCbor.code, await sha256.digest(ipldBytes))
      if (!bytesEqual(ipldBytes, expected)) failures.push(`@ipld/dag-cbor bytes differ: ${label}`)
      if (ipldCid.toString() !== cid) failures.push(`@ipld/dag-cbor CID differs: ${label}`)
    }
    expect(failures).toEqual([])
  })

  it('valid values are accepted', async () => {
    expect(valid.length).toBeGreaterThan(0)
    const failures: string[] = []
    for (const { note, json } of valid) {
      const error = await errorOf(() => parseRecordData(json))
      if (error !== null) failures.push(`${note}: ${error}`)
    }
    expect(failures).toEqual([])
  })

  it('invalid values are rejected', async () => {
    expect(invalid.length).toBeGreaterThan(0)
    const failures: string[] = []
    for (const { note, json } of invalid) {
      if ((await errorOf(() => parseRecordData(json))) === null) failures.push(`${note}: ${show(json)}`)
    }
    expect(failures).toEqual([])
  })
})
