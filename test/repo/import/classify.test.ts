/**
 * classifyBlock (src/repo/import/classify.ts): what the import stages for
 * each block. For MST nodes the children and the full keys (prefix
 * compression undone) must be exactly what `@atproto/repo`'s MST reads from
 * the same node, since the tree walk in D1 trusts them; records carry the
 * blobs they reference at any depth (typed and legacy refs) and the
 * backlinks the write path indexes (src/repo/prepare.ts backlinksOfRecord:
 * follow/block subjects, like/repost subject URIs); anything else is
 * neither. Malformed blocks and nodes are refused with InvalidImportError.
 */
import { encode } from '@atproto/lex-cbor'
import { type Cid, cidForCbor, cidForRawBytes, RAW_DATA_CODEC } from '@atproto/lex-data'
import { MST } from '@atproto/repo'
import { describe, expect, it } from 'vitest'
import type { CarBlock } from '../../../src/repo/import/car-stream'
import { classifyBlock } from '../../../src/repo/import/classify'
import { buildRepo, cborBlock, concat, type RecordSpec, THING, things } from './fixtures'

const DID = 'did:plc:classifytest0000000000000'
const DAG_CBOR = 0x71
const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text)

const blockOf = async (value: unknown): Promise<CarBlock> => {
  const { cid, bytes } = await cborBlock(value)
  return { cid: cid.toString(), codec: DAG_CBOR, bytes }
}
const rawCborBlock = async (bytes: Uint8Array): Promise<CarBlock> => ({ cid: (await cidForCbor(bytes)).toString(), codec: DAG_CBOR, bytes })

const nodeOf = async (block: CarBlock): Promise<{ c: string[]; k: [string, string][] }> => {
  const classified = classifyBlock(block)
  expect(classified.recordJson).toBeNull()
  expect(classified.nodeJson).not.toBeNull()
  return JSON.parse(classified.nodeJson!)
}
const recordOf = async (value: Record<string, unknown>): Promise<{ t: string; b: string[]; l: [string, string][] }> => {
  const classified = classifyBlock(await blockOf(value))
  expect(classified.nodeJson).toBeNull()
  expect(classified.recordJson).not.toBeNull()
  return JSON.parse(classified.recordJson!)
}
const refusalOf = (block: CarBlock): string => {
  try {
    classifyBlock(block)
  } catch (err) {
    expect((err as Error).name).toBe('InvalidImportError')
    return (err as Error).message
  }
  throw new Error('expected classifyBlock to refuse the block')
}

const blobCid = async (seed: string): Promise<Cid> => cidForRawBytes(utf8(seed))
const blobRef = (ref: Cid, mimeType = 'image/png') => ({ $type: 'blob', ref, mimeType, size: 1234 })

describe('MST nodes', () => {
  it("children and full keys of every node match @atproto/repo's reading of the same node", async () => {
    // Several collections and long shared prefixes, so nodes have subtrees and compressed keys.
    const records: RecordSpec[] = [
      ...things(300),
      ...Array.from({ length: 40 }, (_, i) => ({
        collection: 'app.bsky.feed.like',
        rkey: `3kzzzzzzzz${String(i).padStart(3, '0')}`,
        record: { $type: 'app.bsky.feed.like', n: i },
      })),
    ]
    const { repo, storage } = await buildRepo(DID, records)
    let nodes = 0
    let leaves = 0
    const visit = async (mst: MST): Promise<void> => {
      const cid = await mst.getPointer()
      const entries = await mst.getEntries()
      const node = await nodeOf({ cid: cid.toString(), codec: DAG_CBOR, bytes: (await storage.getBytes(cid))! })
      const subtrees = entries.filter((e): e is MST => e.isTree())
      expect(node.c).toEqual(await Promise.all(subtrees.map(async (t) => (await t.getPointer()).toString())))
      expect(node.k).toEqual(entries.flatMap((e) => (e.isLeaf() ? [[e.key, e.value.toString()]] : [])))
      nodes++
      leaves += node.k.length
      for (const subtree of subtrees) await visit(subtree)
    }
    await visit(repo.data)
    expect(leaves).toBe(records.length)
    expect(nodes).toBeGreaterThan(10)
  })

  it('the empty node and hand-built prefix compression', async () => {
    expect(await nodeOf(await blockOf({ l: null, e: [] }))).toEqual({ c: [], k: [] })
    const rec = (await cborBlock({ $type: THING })).cid
    const left = (await cborBlock({ l: null, e: [] })).cid
    const right = (await cborBlock({ l: null, e: [{ p: 0, k: utf8('com.example.thing/zz'), v: rec, t: null }] })).cid
    const node = await blockOf({
      l: left,
      e: [
        { p: 0, k: utf8('com.example.thing/abc'), v: rec, t: null },
        { p: 20, k: utf8('d'), v: rec, t: right },
        { p: 18, k: utf8('b'), v: rec, t: null },
      ],
    })
    expect(await nodeOf(node)).toEqual({
      c: [left.toString(), right.toString()],
      k: [
        ['com.example.thing/abc', rec.toString()],
        ['com.example.thing/abd', rec.toString()],
        ['com.example.thing/b', rec.toString()],
      ],
    })
  })

  it('malformed nodes: keys out of order or repeated, invalid paths, non-UTF-8 keys, bad links', async () => {
    const rec = (await cborBlock({ $type: THING })).cid
    const entry = (k: Uint8Array | string, extra: Record<string, unknown> = {}) => ({ p: 0, k: typeof k === 'string' ? utf8(k) : k, v: rec, t: null, ...extra })
    const refuse = async (value: unknown): Promise<string> => {
      const block = await blockOf(value)
      return refusalOf(block).replace(block.cid, '<cid>')
    }
    expect(await refuse({ l: null, e: [entry('com.example.thing/b'), entry('com.example.thing/a')] })).toBe('MST node <cid> has keys out of order')
    expect(await refuse({ l: null, e: [entry('com.example.thing/a'), entry('com.example.thing/a')] })).toBe('MST node <cid> has keys out of order')
    for (const path of ['nonsense', 'com.example.thing/a/b', '/a', 'com.example.thing/', 'not an nsid/a', 'com.example.thing/..']) {
      expect(await refuse({ l: null, e: [entry(path)] })).toBe(`The repo holds an invalid record path: ${path}`)
    }
    expect(await refuse({ l: null, e: [entry(Uint8Array.of(0xff, 0xfe))] })).toBe('MST node <cid> has a key that is not UTF-8')
    expect(await refuse({ l: 'not a link', e: [] })).toBe('MST node <cid> has a malformed left link')
    for (const bad of [{ v: 'not a cid' }, { t: 'not a cid' }, { p: null }, { p: 'zero' }]) {
      expect(await refuse({ l: null, e: [entry('com.example.thing/a', bad)] }), JSON.stringify(bad)).toBe('MST node <cid> has a malformed entry')
    }
    expect(await refuse({ l: null, e: [{ p: 0, k: 'com.example.thing/a', v: rec, t: null }] })).toBe('MST node <cid> has a malformed entry')
  })
})

describe('records', () => {
  it('finds typed blob refs at any depth, in arrays, and legacy {cid, mimeType} refs, each once', async () => {
    const [avatar, image1, image2, deep, legacy] = await Promise.all(['avatar', 'image1', 'image2', 'deep', 'legacy'].map(blobCid))
    const record = {
      $type: 'app.bsky.feed.post',
      text: 'blobs everywhere',
      avatar: blobRef(avatar),
      embed: { $type: 'app.bsky.embed.images', images: [{ image: blobRef(image1), alt: '' }, { image: blobRef(image2), alt: '' }] },
      nested: { a: [[{ b: { c: blobRef(deep, 'video/mp4') } }]] },
      old: { cid: legacy.toString(), mimeType: 'image/jpeg' },
      again: blobRef(avatar),
    }
    const classified = await recordOf(record)
    expect(classified.t).toBe('app.bsky.feed.post')
    expect([...classified.b].sort()).toEqual([avatar, image1, image2, deep, legacy].map(String).sort())
    expect(classified.l).toEqual([])
  })

  it('lookalikes are not blobs: an extra key, a missing mime type, a string ref', async () => {
    const ref = await blobCid('lookalike')
    const classified = await recordOf({
      $type: THING,
      extraKey: { ...blobRef(ref), extra: 1 },
      noMime: { $type: 'blob', ref, size: 1 },
      stringRef: { $type: 'blob', ref: ref.toString(), mimeType: 'image/png', size: 1 },
      legacyExtra: { cid: ref.toString(), mimeType: 'image/png', size: 1 },
    })
    expect(classified.b).toEqual([])
  })

  it('backlinks are the ones the write path indexes: follow/block subjects, like/repost subject URIs', async () => {
    const post = 'at://did:plc:someone0000000000000000/app.bsky.feed.post/3kabc'
    const strong = { uri: post, cid: (await cborBlock({ $type: 'app.bsky.feed.post' })).cid.toString() }
    const at = '2024-01-01T00:00:00.000Z'
    expect((await recordOf({ $type: 'app.bsky.graph.follow', subject: 'did:plc:friend', createdAt: at })).l).toEqual([['subject', 'did:plc:friend']])
    expect((await recordOf({ $type: 'app.bsky.graph.block', subject: 'did:web:troll.example', createdAt: at })).l).toEqual([
      ['subject', 'did:web:troll.example'],
    ])
    expect((await recordOf({ $type: 'app.bsky.feed.like', subject: strong, createdAt: at })).l).toEqual([['subject.uri', post]])
    expect((await recordOf({ $type: 'app.bsky.feed.repost', subject: strong, createdAt: at })).l).toEqual([['subject.uri', post]])
    // Not backlinks: a handle as subject, a like of a non-URI, a reply's parent, a list item.
    expect((await recordOf({ $type: 'app.bsky.graph.follow', subject: 'alice.test', createdAt: at })).l).toEqual([])
    expect((await recordOf({ $type: 'app.bsky.feed.like', subject: { uri: 'https://x', cid: strong.cid }, createdAt: at })).l).toEqual([])
    expect((await recordOf({ $type: 'app.bsky.feed.post', text: '', reply: { root: strong, parent: strong }, createdAt: at })).l).toEqual([])
    expect((await recordOf({ $type: 'app.bsky.graph.listitem', subject: 'did:plc:friend', list: post, createdAt: at })).l).toEqual([])
  })

  it('records with invalid dag-cbor are refused', async () => {
    const valid = encode({ $type: THING, text: 'hi' })
    const cases: [string, Uint8Array][] = [
      ['indefinite-length map', Uint8Array.of(0xbf, 0x65, ...utf8('$type'), 0x61, 0x78, 0xff)],
      ['trailing bytes', concat(valid, Uint8Array.of(0x00))],
      ['truncated', valid.subarray(0, valid.byteLength - 1)],
      ['NaN', concat(Uint8Array.of(0xa2, 0x65, ...utf8('$type'), 0x61, 0x78, 0x61, 0x6e), Uint8Array.of(0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0))],
      ['duplicate key', Uint8Array.of(0xa2, 0x65, ...utf8('$type'), 0x61, 0x78, 0x65, ...utf8('$type'), 0x61, 0x79)],
      ['integer map key', Uint8Array.of(0xa2, 0x65, ...utf8('$type'), 0x61, 0x78, 0x01, 0x02)],
      ['CID tag without the 0x00 prefix', Uint8Array.of(0xa1, 0x61, 0x61, 0xd8, 0x2a, 0x42, 0x01, 0x71)],
    ]
    for (const [name, bytes] of cases) {
      const block = await rawCborBlock(bytes)
      expect(refusalOf(block), name).toBe(`Block ${block.cid} is not valid dag-cbor`)
    }
  })
})

describe('neither node nor record', () => {
  it('a commit, a map without a string $type, a list, raw blocks (even undecodable ones)', async () => {
    const neither = { nodeJson: null, recordJson: null }
    const { repo, storage } = await buildRepo(DID, things(2))
    const commit = { cid: repo.cid.toString(), codec: DAG_CBOR, bytes: (await storage.getBytes(repo.cid))! }
    expect(classifyBlock(commit)).toEqual(neither)
    expect(classifyBlock(await blockOf({ text: 'no type' }))).toEqual(neither)
    expect(classifyBlock(await blockOf({ $type: 42 }))).toEqual(neither)
    expect(classifyBlock(await blockOf([1, 2, 3]))).toEqual(neither)
    // A map shaped like a node but with a third key is not a node.
    expect(classifyBlock(await blockOf({ l: null, e: [], x: 1 }))).toEqual(neither)
    const raw = Uint8Array.of(0xff, 0x00, 0xfe)
    expect(classifyBlock({ cid: (await cidForRawBytes(raw)).toString(), codec: RAW_DATA_CODEC, bytes: raw })).toEqual(neither)
  })
})
