/**
 * Record validation on write, as the reference's repo/prepare.ts does it:
 * known lexicons are validated (400 InvalidRequest), unknown ones get
 * validationStatus "unknown" unless validate:true, $type is filled in or must
 * match the collection, record keys and collection NSIDs are checked, and no
 * write that fails validation changes the repo.
 */
import { beforeAll, describe, expect, test } from 'bun:test'
import { type PdsProcess } from './harness'
import { usePds } from './use-pds'
import { createSession, expectStatus, expectXrpcError, now, post, rkeyOf, xget, xpost } from './xrpc-client'

let pds: PdsProcess
let token: string

usePds((started, accessJwt) => {
  pds = started
  token = accessJwt
})

const create = (body: Record<string, unknown>) =>
  xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, ...body }, token)
const latest = async (): Promise<{ cid: string; rev: string }> =>
  expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body

/** Asserts a rejected write: 400 InvalidRequest and no new commit. */
const expectRejected = async (body: Record<string, unknown>, message?: string | RegExp): Promise<void> => {
  const before = await latest()
  expectXrpcError(await create(body), 400, 'InvalidRequest', message)
  expect(await latest()).toEqual(before)
}

beforeAll(async () => {
  // Give the repo a first commit so "no new commit" checks compare real heads.
  expectStatus(await create({ collection: 'app.bsky.feed.post', record: post('seed') }), 200)
})

describe('known lexicons are validated', () => {
  test('app.bsky.feed.post without text → 400 InvalidRequest', async () => {
    await expectRejected(
      { collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', createdAt: now() } },
      /^Invalid app\.bsky\.feed\.post record/,
    )
  })

  test('text over 300 graphemes → 400', async () => {
    await expectRejected({ collection: 'app.bsky.feed.post', record: post('x'.repeat(301)) })
  })

  test('createdAt that is not a datetime → 400', async () => {
    await expectRejected({
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', text: 'hi', createdAt: 'yesterday' },
    })
  })

  test('putRecord validates too', async () => {
    const before = await latest()
    const res = await xpost(pds, 'com.atproto.repo.putRecord', {
      repo: pds.did,
      collection: 'app.bsky.feed.post',
      rkey: '3kvalidput222',
      record: { $type: 'app.bsky.feed.post', createdAt: now() },
    }, token)
    expectXrpcError(res, 400, 'InvalidRequest')
    expect(await latest()).toEqual(before)
  })

  test('a post under a non-TID rkey → 400 (the lexicon says key: tid)', async () => {
    await expectRejected({ collection: 'app.bsky.feed.post', rkey: 'not-a-tid', record: post('x') })
  })

  test('validate:false skips validation and reports no validationStatus', async () => {
    const res = await create({
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', createdAt: now() },
      validate: false,
    })
    expectStatus(res, 200)
    expect(res.body.validationStatus).toBeUndefined()
  })
})

describe('data model', () => {
  test('a float anywhere in a record → 400', async () => {
    await expectRejected({ collection: 'app.bsky.feed.post', record: { ...post('f'), extra: 1.5 } })
    await expectRejected({ collection: 'com.example.e2e.thing', record: { nested: { n: 0.25 } } })
  })

  test('a record that is not an object → 400', async () => {
    await expectRejected({ collection: 'com.example.e2e.thing', record: 'just a string' })
  })
})

describe('$type', () => {
  test('a missing $type is filled in from the collection', async () => {
    const record = { text: 'no type', createdAt: now() }
    const res = expectStatus(await create({ collection: 'app.bsky.feed.post', record }), 200)
    expect(res.body.validationStatus).toBe('valid')
    const got = await xget(pds, 'com.atproto.repo.getRecord', {
      repo: pds.did,
      collection: 'app.bsky.feed.post',
      rkey: rkeyOf(res.body.uri),
    })
    expect(expectStatus(got, 200).body.value).toEqual({ $type: 'app.bsky.feed.post', ...record })
  })

  test('a $type other than the collection → 400', async () => {
    await expectRejected(
      { collection: 'app.bsky.feed.post', record: { ...post('x'), $type: 'app.bsky.feed.like' } },
      'Invalid $type: expected app.bsky.feed.post, got app.bsky.feed.like',
    )
  })
})

describe('record keys and collections', () => {
  test('an invalid rkey → 400', async () => {
    for (const rkey of ['has space', '..', 'a/b', 'x'.repeat(513)]) {
      await expectRejected({ collection: 'com.example.e2e.thing', rkey, record: { a: 1 } })
    }
  })

  test('unusual but valid rkeys are accepted', async () => {
    for (const rkey of ['self', 'a:b', 'a~b_c.d-e', '3jzfcijpj2z2a']) {
      expectStatus(await create({ collection: 'com.example.e2e.thing', rkey, record: { a: 1 } }), 200)
    }
  })

  test('a collection that is not an NSID → 400', async () => {
    for (const collection of ['notansid', 'com.example.', 'com..example.x', '1com.example.x']) {
      await expectRejected({ collection, record: { a: 1 } })
    }
  })
})

describe('unknown lexicons', () => {
  test('default: accepted with validationStatus "unknown"', async () => {
    const res = expectStatus(await create({ collection: 'com.example.e2e.unknown', record: { anything: ['goes', 1] } }), 200)
    expect(res.body.validationStatus).toBe('unknown')
  })

  test('validate:true → 400 Unknown lexicon type', async () => {
    await expectRejected(
      { collection: 'com.example.e2e.unknown', record: { anything: 1 }, validate: true },
      'Unknown lexicon type: com.example.e2e.unknown',
    )
  })

  test('validate:false → accepted without validationStatus', async () => {
    const res = expectStatus(await create({ collection: 'com.example.e2e.unknown', record: { a: 1 }, validate: false }), 200)
    expect(res.body.validationStatus).toBeUndefined()
  })

  test('applyWrites reports "unknown" per result', async () => {
    const res = await xpost(pds, 'com.atproto.repo.applyWrites', {
      repo: pds.did,
      writes: [
        { $type: 'com.atproto.repo.applyWrites#create', collection: 'com.example.e2e.unknown', value: { a: 2 } },
        { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', value: post('known') },
      ],
    }, token)
    const body = expectStatus(res, 200).body
    expect(body.results.map((r: any) => r.validationStatus)).toEqual(['unknown', 'valid'])
  })
})
