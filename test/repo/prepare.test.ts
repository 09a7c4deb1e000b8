/**
 * prepareCreate / prepareUpdate / prepareDelete (src/repo/prepare.ts): the
 * pure checks the reference PDS's repo/prepare.ts makes before a write:
 * $type, record keys (syntax and the lexicon's key type), lexicon validation,
 * the data model (no floats) and the 1 MB record cap.
 */
import { decode } from '@atproto/lex-cbor'
import { cidForCbor, parseCid, type Cid } from '@atproto/lex-data'
import { describe, expect, it } from 'vitest'
import { InvalidRecordError } from '../../src/repo/errors'
import { backlinksOf, prepareCreate, prepareDelete, prepareUpdate } from '../../src/repo/prepare'

const did = 'did:web:localhost%3A8787'
const now = '2026-11-23T12:00:00.000Z'
const post = { text: 'hello', createdAt: now }
const TID = '3kabcdefghij2'

const refused = async (promise: Promise<unknown>, message: RegExp): Promise<void> => {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(InvalidRecordError)
  expect(String((err as Error).message)).toMatch(message)
}

describe('prepareCreate', () => {
  it('fills in a missing $type and validates a known record', async () => {
    const w = await prepareCreate({ did, collection: 'app.bsky.feed.post', record: post })
    expect(w.record.$type).toBe('app.bsky.feed.post')
    expect(w.validationStatus).toBe('valid')
    expect(w.uri).toBe(`at://${did}/app.bsky.feed.post/${w.rkey}`)
    expect(w.rkey).toMatch(/^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$/)
    // The bytes are the record's dag-cbor and the CID is theirs.
    expect(decode(w.bytes)).toEqual({ ...post, $type: 'app.bsky.feed.post' })
    expect((await cidForCbor(w.bytes)).equals(w.cid)).toBe(true)
  })

  it('refuses a $type that differs from the collection', async () => {
    await refused(prepareCreate({ did, collection: 'app.bsky.feed.post', record: { ...post, $type: 'app.bsky.feed.like' } }), /\$type/)
  })

  it('refuses values outside the data model (floats) and non-object records', async () => {
    await refused(prepareCreate({ did, collection: 'com.example.thing', record: { n: 1.5 } }), /./)
    await refused(prepareCreate({ did, collection: 'com.example.thing', record: { deep: [{ n: 0.1 }] } }), /./)
    await refused(prepareCreate({ did, collection: 'app.bsky.feed.post', record: { ...post, n: 2.5 } }), /./)
    await refused(prepareCreate({ did, collection: 'com.example.thing', record: [1, 2] }), /object/)
    await refused(prepareCreate({ did, collection: 'com.example.thing', record: null }), /object/)
  })

  it('refuses invalid record keys and collections', async () => {
    for (const rkey of ['a/b', '.', '..', 'has space', 'x'.repeat(513)]) {
      await refused(prepareCreate({ did, collection: 'com.example.thing', rkey, record: {} }), /record key/)
    }
    await refused(prepareCreate({ did, collection: 'not-an-nsid', record: {} }), /collection/)
  })

  it('checks the rkey against the lexicon key type: posts need a TID, profiles "self"', async () => {
    await refused(prepareCreate({ did, collection: 'app.bsky.feed.post', rkey: 'self', record: post }), /record key for app\.bsky\.feed\.post/)
    expect((await prepareCreate({ did, collection: 'app.bsky.feed.post', rkey: TID, record: post })).rkey).toBe(TID)
    await refused(prepareCreate({ did, collection: 'app.bsky.actor.profile', rkey: TID, record: { displayName: 'A' } }), /record key for app\.bsky\.actor\.profile/)
    const profile = await prepareCreate({ did, collection: 'app.bsky.actor.profile', rkey: 'self', record: { displayName: 'A' } })
    expect(profile.validationStatus).toBe('valid')
  })

  it('validates known collections against the lexicon', async () => {
    await refused(prepareCreate({ did, collection: 'app.bsky.feed.post', record: { text: 'no createdAt' } }), /app\.bsky\.feed\.post/)
    await refused(prepareCreate({ did, collection: 'app.bsky.feed.post', record: { ...post, text: 7 } }), /app\.bsky\.feed\.post/)
    // validate: false skips it.
    const unchecked = await prepareCreate({ did, collection: 'app.bsky.feed.post', record: { text: 'no createdAt' }, validate: false })
    expect(unchecked.validationStatus).toBeUndefined()
  })

  it('unknown collections: "unknown" by default, refused with validate: true', async () => {
    const w = await prepareCreate({ did, collection: 'com.example.thing', record: { any: 'thing' } })
    expect(w.validationStatus).toBe('unknown')
    await refused(prepareCreate({ did, collection: 'com.example.thing', record: {}, validate: true }), /Unknown lexicon/)
  })

  it('refuses records over 1 MB of dag-cbor, accepts one just under', async () => {
    await refused(prepareCreate({ did, collection: 'com.example.thing', record: { blob: 'x'.repeat(1_000_001) } }), /too large/)
    const fits = await prepareCreate({ did, collection: 'com.example.thing', record: { blob: 'x'.repeat(999_900) } })
    expect(fits.bytes.byteLength).toBeLessThanOrEqual(1_000_000)
  })

  it('encodes lex values (CIDs, bytes) as given; JSON conversion is the XRPC layer job', async () => {
    const link = parseCid('bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm')
    const w = await prepareCreate({ did, collection: 'com.example.thing', record: { ref: link, raw: new Uint8Array([1, 2, 3]) } })
    const back = decode(w.bytes) as { ref: Cid; raw: Uint8Array }
    expect(back.ref.equals(link)).toBe(true)
    expect([...back.raw]).toEqual([1, 2, 3])
  })
})

describe('prepareUpdate and prepareDelete', () => {
  it('need a valid rkey and keep the swap CID', async () => {
    const created = await prepareCreate({ did, collection: 'com.example.thing', record: { v: 1 } })
    const u = await prepareUpdate({ did, collection: 'com.example.thing', rkey: 'k', record: { v: 2 }, swapCid: created.cid })
    expect(u).toMatchObject({ action: 'update', rkey: 'k', swapCid: created.cid })
    await refused(prepareUpdate({ did, collection: 'com.example.thing', rkey: '', record: {} }), /record key/)
    expect(() => prepareDelete({ did, collection: 'com.example.thing', rkey: '..' })).toThrow(InvalidRecordError)
    expect(prepareDelete({ did, collection: 'com.example.thing', rkey: 'k', swapCid: null })).toEqual({
      action: 'delete',
      collection: 'com.example.thing',
      rkey: 'k',
      uri: `at://${did}/com.example.thing/k`,
      swapCid: null,
    })
  })

  it('a profile update is checked against "self" too', async () => {
    await refused(prepareUpdate({ did, collection: 'app.bsky.actor.profile', rkey: 'other', record: {} }), /record key for app\.bsky\.actor\.profile/)
  })
})

describe('backlinksOf', () => {
  it('names the subject of follows, blocks, likes and reposts only', async () => {
    const subject = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
    const strongRef = { uri: `at://${subject}/app.bsky.feed.post/${TID}`, cid: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm' }
    const follow = await prepareCreate({ did, collection: 'app.bsky.graph.follow', record: { subject, createdAt: now } })
    const like = await prepareCreate({ did, collection: 'app.bsky.feed.like', record: { subject: strongRef, createdAt: now } })
    const p = await prepareCreate({ did, collection: 'app.bsky.feed.post', record: post })
    expect(backlinksOf(follow)).toEqual([{ path: 'subject', linkTo: subject }])
    expect(backlinksOf(like)).toEqual([{ path: 'subject.uri', linkTo: strongRef.uri }])
    expect(backlinksOf(p)).toEqual([])
    expect(backlinksOf(prepareDelete({ did, collection: 'app.bsky.graph.follow', rkey: TID }))).toEqual([])
  })
})
