/**
 * com.atproto.repo.* reads and writes: createRecord, getRecord, listRecords,
 * putRecord, deleteRecord, describeRepo, applyWrites, swaps, and the
 * reference's follow "backlink conflict" clean-up. Expected answers follow the
 * reference PDS's api/com/atproto/repo/*.ts.
 */
import { beforeAll, describe, expect, test } from 'bun:test'
import { type PdsProcess } from './harness'
import { usePds } from './use-pds'
import {
  createSession,
  expectStatus,
  expectXrpcError,
  post,
  rkeyOf,
  xget,
  xpost,
} from './xrpc-client'

let pds: PdsProcess
let token: string

usePds((started, accessJwt) => {
  pds = started
  token = accessJwt
})

const write = (nsid: string, body: Record<string, unknown>) =>
  xpost(pds, `com.atproto.repo.${nsid}`, { repo: pds.did, ...body }, token)
const getRecord = (collection: string, rkey: string) =>
  xget(pds, 'com.atproto.repo.getRecord', { repo: pds.did, collection, rkey })
const latest = async (): Promise<{ cid: string; rev: string }> =>
  expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body
const TID_RE = /^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$/

describe('createRecord / getRecord', () => {
  test('creates a post and reads it back', async () => {
    const record = post('hello world')
    const res = expectStatus(await write('createRecord', { collection: 'app.bsky.feed.post', record }), 200)
    expect(res.body.uri).toStartWith(`at://${pds.did}/app.bsky.feed.post/`)
    expect(rkeyOf(res.body.uri)).toMatch(TID_RE)
    expect(res.body.cid).toStartWith('bafyrei')
    expect(res.body.commit.cid).toStartWith('bafyrei')
    expect(res.body.commit.rev).toMatch(TID_RE)
    expect(res.body.validationStatus).toBe('valid')
    const got = expectStatus(await getRecord('app.bsky.feed.post', rkeyOf(res.body.uri)), 200)
    expect(got.body).toEqual({ uri: res.body.uri, cid: res.body.cid, value: record })
    expect(await latest()).toEqual(res.body.commit)
  })

  test('getRecord accepts the handle as repo, and a matching cid', async () => {
    const res = expectStatus(await write('createRecord', { collection: 'app.bsky.feed.post', record: post('by handle') }), 200)
    const rkey = rkeyOf(res.body.uri)
    const byHandle = await xget(pds, 'com.atproto.repo.getRecord', { repo: pds.handle, collection: 'app.bsky.feed.post', rkey })
    expect(expectStatus(byHandle, 200).body.uri).toBe(res.body.uri)
    const withCid = await xget(pds, 'com.atproto.repo.getRecord', {
      repo: pds.did,
      collection: 'app.bsky.feed.post',
      rkey,
      cid: res.body.cid,
    })
    expectStatus(withCid, 200)
  })

  test('writes accept the handle as repo', async () => {
    const res = await xpost(pds, 'com.atproto.repo.createRecord', {
      repo: pds.handle,
      collection: 'app.bsky.feed.post',
      record: post('repo given as handle'),
    }, token)
    expect(expectStatus(res, 200).body.uri).toStartWith(`at://${pds.did}/`)
  })

  test('a missing record is 400 RecordNotFound (not 404)', async () => {
    const res = await getRecord('app.bsky.feed.post', '3zzzzzzzzzzzz')
    expectXrpcError(res, 400, 'RecordNotFound', `Could not locate record: at://${pds.did}/app.bsky.feed.post/3zzzzzzzzzzzz`)
  })

  test('getRecord with a cid that is not the current one → 400 RecordNotFound', async () => {
    const a = expectStatus(await write('createRecord', { collection: 'app.bsky.feed.post', record: post('cid a') }), 200)
    const b = expectStatus(await write('createRecord', { collection: 'app.bsky.feed.post', record: post('cid b') }), 200)
    const res = await xget(pds, 'com.atproto.repo.getRecord', {
      repo: pds.did,
      collection: 'app.bsky.feed.post',
      rkey: rkeyOf(a.body.uri),
      cid: b.body.cid,
    })
    expectXrpcError(res, 400, 'RecordNotFound')
  })

  test('reads from a repo this PDS does not host → 400 like the reference', async () => {
    const other = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
    const rec = await xget(pds, 'com.atproto.repo.getRecord', { repo: other, collection: 'app.bsky.feed.post', rkey: '3zzzzzzzzzzzz' })
    expectXrpcError(rec, 400, 'InvalidRequest', 'Could not locate record')
    const list = await xget(pds, 'com.atproto.repo.listRecords', { repo: other, collection: 'app.bsky.feed.post' })
    expectXrpcError(list, 400, 'InvalidRequest', `Could not find repo: ${other}`)
  })

  test('an explicit rkey is used', async () => {
    const res = await write('createRecord', { collection: 'com.example.e2e.thing', rkey: 'my-key', record: { hello: 'x' } })
    expect(expectStatus(res, 200).body.uri).toBe(`at://${pds.did}/com.example.e2e.thing/my-key`)
    expect(res.body.validationStatus).toBe('unknown')
    // Creating over an existing key must fail (the reference's MST refuses it,
    // as an unmapped 500) and must leave the record alone.
    const again = await write('createRecord', { collection: 'com.example.e2e.thing', rkey: 'my-key', record: { hello: 'y' } })
    expect(again.status).toBeGreaterThanOrEqual(400)
    expect(expectStatus(await getRecord('com.example.e2e.thing', 'my-key'), 200).body.value).toEqual({ $type: 'com.example.e2e.thing', hello: 'x' })
  })
})

describe('listRecords', () => {
  const collection = 'com.example.e2e.list'
  const uris: string[] = []

  beforeAll(async () => {
    for (let i = 0; i < 5; i++) {
      const res = await write('createRecord', { collection, record: { n: i } })
      uris.push(expectStatus(res, 200).body.uri)
    }
  })

  test('newest first by default, with values and cids', async () => {
    const res = expectStatus(await xget(pds, 'com.atproto.repo.listRecords', { repo: pds.did, collection }), 200)
    expect(res.body.records.map((r: any) => r.uri)).toEqual([...uris].reverse())
    expect(res.body.records[0].value).toEqual({ $type: collection, n: 4 })
    expect(res.body.records[0].cid).toStartWith('bafyrei')
  })

  test('reverse=true is oldest first', async () => {
    const res = expectStatus(await xget(pds, 'com.atproto.repo.listRecords', { repo: pds.did, collection, reverse: true }), 200)
    expect(res.body.records.map((r: any) => r.uri)).toEqual(uris)
  })

  test('limit + cursor pages through everything once', async () => {
    for (const reverse of [false, true]) {
      const seen: string[] = []
      let cursor: string | undefined
      for (let page = 0; page < 10; page++) {
        const res = expectStatus(
          await xget(pds, 'com.atproto.repo.listRecords', { repo: pds.did, collection, limit: 2, cursor, reverse }),
          200,
        )
        expect(res.body.records.length).toBeLessThanOrEqual(2)
        seen.push(...res.body.records.map((r: any) => r.uri))
        cursor = res.body.cursor
        if (!cursor || res.body.records.length === 0) break
      }
      expect(seen).toEqual(reverse ? uris : [...uris].reverse())
    }
  })

  test('limit out of range is 400 InvalidRequest', async () => {
    const res = await xget(pds, 'com.atproto.repo.listRecords', { repo: pds.did, collection, limit: 101 })
    expectXrpcError(res, 400, 'InvalidRequest')
  })

  test('an empty collection lists nothing', async () => {
    const res = await xget(pds, 'com.atproto.repo.listRecords', { repo: pds.did, collection: 'com.example.e2e.empty' })
    expect(expectStatus(res, 200).body.records).toEqual([])
  })
})

describe('putRecord', () => {
  test('creates, updates, and an identical put makes no commit', async () => {
    const collection = 'app.bsky.feed.post'
    const rkey = '3kputrecord22'
    const v1 = post('version one')
    const created = expectStatus(await write('putRecord', { collection, rkey, record: v1 }), 200)
    expect(created.body.uri).toBe(`at://${pds.did}/${collection}/${rkey}`)
    expect(created.body.validationStatus).toBe('valid')
    expect(created.body.commit.rev).toMatch(TID_RE)

    const v2 = { ...v1, text: 'version two' }
    const updated = expectStatus(await write('putRecord', { collection, rkey, record: v2 }), 200)
    expect(updated.body.cid).not.toBe(created.body.cid)
    expect(updated.body.commit.rev > created.body.commit.rev).toBe(true)
    expect(expectStatus(await getRecord(collection, rkey), 200).body.value).toEqual(v2)

    const before = await latest()
    const same = expectStatus(await write('putRecord', { collection, rkey, record: v2 }), 200)
    expect(same.body.cid).toBe(updated.body.cid)
    expect(same.body.commit).toBeUndefined() // reference: no-op, no commit
    expect(await latest()).toEqual(before)
  })

  test('profile record: create and update app.bsky.actor.profile/self', async () => {
    const collection = 'app.bsky.actor.profile'
    const a = await write('putRecord', { collection, rkey: 'self', record: { $type: collection, displayName: 'Alice' } })
    expect(expectStatus(a, 200).body.validationStatus).toBe('valid')
    const b = await write('putRecord', { collection, rkey: 'self', record: { $type: collection, displayName: 'Alice B', description: 'hi' } })
    expectStatus(b, 200)
    const got = expectStatus(await getRecord(collection, 'self'), 200)
    expect(got.body.value).toEqual({ $type: collection, displayName: 'Alice B', description: 'hi' })
  })

  test('a profile under another rkey than self is 400 InvalidRequest', async () => {
    const res = await write('createRecord', {
      collection: 'app.bsky.actor.profile',
      rkey: 'notself',
      record: { $type: 'app.bsky.actor.profile', displayName: 'x' },
    })
    expectXrpcError(res, 400, 'InvalidRequest')
  })
})

describe('deleteRecord', () => {
  test('deletes an existing record', async () => {
    const res = expectStatus(await write('createRecord', { collection: 'app.bsky.feed.post', record: post('bye') }), 200)
    const rkey = rkeyOf(res.body.uri)
    const del = expectStatus(await write('deleteRecord', { collection: 'app.bsky.feed.post', rkey }), 200)
    expect(del.body.commit.rev > res.body.commit.rev).toBe(true)
    expectXrpcError(await getRecord('app.bsky.feed.post', rkey), 400, 'RecordNotFound')
  })

  test('deleting a missing record is a 200 no-op without a commit', async () => {
    const before = await latest()
    const del = expectStatus(await write('deleteRecord', { collection: 'app.bsky.feed.post', rkey: '3kdoesnotexst' }), 200)
    expect(del.body.commit).toBeUndefined()
    expect(await latest()).toEqual(before)
  })
})

describe('describeRepo', () => {
  test('handle, did, didDoc, collections, handleIsCorrect', async () => {
    const res = expectStatus(await xget(pds, 'com.atproto.repo.describeRepo', { repo: pds.did }), 200)
    expect(res.body.did).toBe(pds.did)
    expect(res.body.handle).toBe(pds.handle)
    expect(res.body.handleIsCorrect).toBe(true)
    expect(res.body.didDoc.id).toBe(pds.did)
    expect(res.body.collections).toContain('app.bsky.feed.post')
    expect(res.body.collections).toContain('com.example.e2e.list')
    expect(res.body.collections).not.toContain('com.example.e2e.empty')
    const byHandle = expectStatus(await xget(pds, 'com.atproto.repo.describeRepo', { repo: pds.handle }), 200)
    expect(byHandle.body.did).toBe(pds.did)
  })

  test('an unknown repo is 400 RepoNotFound', async () => {
    const res = await xget(pds, 'com.atproto.repo.describeRepo', { repo: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa' })
    expectXrpcError(res, 400, 'RepoNotFound', 'Could not find repo for DID: did:plc:aaaaaaaaaaaaaaaaaaaaaaaa')
  })
})

describe('applyWrites', () => {
  const A = 'com.atproto.repo.applyWrites'
  test('create + update + delete in one commit, results in order', async () => {
    const seed = expectStatus(await write('createRecord', { collection: 'app.bsky.feed.post', record: post('to update') }), 200)
    const gone = expectStatus(await write('createRecord', { collection: 'app.bsky.feed.post', record: post('to delete') }), 200)
    const res = expectStatus(
      await write('applyWrites', {
        writes: [
          { $type: `${A}#create`, collection: 'app.bsky.feed.post', rkey: '3kapplywrite2', value: post('new') },
          { $type: `${A}#create`, collection: 'app.bsky.feed.post', value: post('new, no rkey') },
          { $type: `${A}#update`, collection: 'app.bsky.feed.post', rkey: rkeyOf(seed.body.uri), value: post('updated') },
          { $type: `${A}#delete`, collection: 'app.bsky.feed.post', rkey: rkeyOf(gone.body.uri) },
        ],
      }),
      200,
    )
    expect(res.body.commit.rev > gone.body.commit.rev).toBe(true)
    expect(await latest()).toEqual(res.body.commit)
    const r = res.body.results
    expect(r.length).toBe(4)
    expect(r[0]).toMatchObject({ $type: `${A}#createResult`, uri: `at://${pds.did}/app.bsky.feed.post/3kapplywrite2`, validationStatus: 'valid' })
    expect(r[1].$type).toBe(`${A}#createResult`)
    expect(r[1].cid).toStartWith('bafyrei')
    expect(r[2]).toMatchObject({ $type: `${A}#updateResult`, uri: seed.body.uri, validationStatus: 'valid' })
    expect(r[3]).toEqual({ $type: `${A}#deleteResult` })
    expect(expectStatus(await getRecord('app.bsky.feed.post', rkeyOf(seed.body.uri)), 200).body.value.text).toBe('updated')
    expectXrpcError(await getRecord('app.bsky.feed.post', rkeyOf(gone.body.uri)), 400, 'RecordNotFound')
    expect(expectStatus(await getRecord('app.bsky.feed.post', rkeyOf(r[1].uri)), 200).body.cid).toBe(r[1].cid)
  })

  test('more than 200 writes is 400 InvalidRequest', async () => {
    const writes = Array.from({ length: 201 }, (_, i) => ({
      $type: `${A}#create`,
      collection: 'com.example.e2e.bulk',
      rkey: `k${i}`,
      value: { i },
    }))
    const before = await latest()
    expectXrpcError(await write('applyWrites', { writes }), 400, 'InvalidRequest', 'Too many writes. Max: 200')
    expect(await latest()).toEqual(before)
  })

  test('exactly 200 writes are accepted', async () => {
    const writes = Array.from({ length: 200 }, (_, i) => ({
      $type: `${A}#create`,
      collection: 'com.example.e2e.bulk200',
      rkey: `k${i}`,
      value: { i },
    }))
    expect(expectStatus(await write('applyWrites', { writes }), 200).body.results.length).toBe(200)
  })

  test('a create and a delete of the same key in one call is allowed', async () => {
    const res = await write('applyWrites', {
      writes: [
        { $type: `${A}#create`, collection: 'com.example.e2e.thing', rkey: 'ephemeral', value: { a: 1 } },
        { $type: `${A}#delete`, collection: 'com.example.e2e.thing', rkey: 'ephemeral' },
      ],
    })
    expectStatus(res, 200)
    expectXrpcError(await getRecord('com.example.e2e.thing', 'ephemeral'), 400, 'RecordNotFound')
  })

  test('an invalid record anywhere fails the whole batch', async () => {
    const before = await latest()
    const res = await write('applyWrites', {
      writes: [
        { $type: `${A}#create`, collection: 'app.bsky.feed.post', rkey: '3kbatchfail22', value: post('fine') },
        { $type: `${A}#create`, collection: 'app.bsky.feed.post', value: { $type: 'app.bsky.feed.post', createdAt: post('').createdAt } },
      ],
    })
    expectXrpcError(res, 400, 'InvalidRequest')
    expect(await latest()).toEqual(before)
    expectXrpcError(await getRecord('app.bsky.feed.post', '3kbatchfail22'), 400, 'RecordNotFound')
  })
})

describe('swaps', () => {
  test('swapCommit: stale → 400 InvalidSwap, current → 200', async () => {
    const old = await latest()
    expectStatus(await write('createRecord', { collection: 'app.bsky.feed.post', record: post('moves head') }), 200)
    const stale = await write('createRecord', { collection: 'app.bsky.feed.post', record: post('x'), swapCommit: old.cid })
    expectXrpcError(stale, 400, 'InvalidSwap', /^Commit was at /)
    const cur = await latest()
    expectStatus(await write('createRecord', { collection: 'app.bsky.feed.post', record: post('y'), swapCommit: cur.cid }), 200)
    const applyStale = await write('applyWrites', {
      swapCommit: cur.cid,
      writes: [{ $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', value: post('z') }],
    })
    expectXrpcError(applyStale, 400, 'InvalidSwap', /^Commit was at /)
  })

  test('swapRecord mismatch on putRecord and deleteRecord → 400 InvalidSwap', async () => {
    const a = expectStatus(await write('createRecord', { collection: 'app.bsky.feed.post', record: post('a') }), 200)
    const b = expectStatus(await write('createRecord', { collection: 'app.bsky.feed.post', record: post('b') }), 200)
    const rkey = rkeyOf(a.body.uri)
    const put = await write('putRecord', { collection: 'app.bsky.feed.post', rkey, record: post('a2'), swapRecord: b.body.cid })
    expectXrpcError(put, 400, 'InvalidSwap', `Record was at ${a.body.cid}`)
    const del = await write('deleteRecord', { collection: 'app.bsky.feed.post', rkey, swapRecord: b.body.cid })
    expectXrpcError(del, 400, 'InvalidSwap', `Record was at ${a.body.cid}`)
    expectStatus(await write('putRecord', { collection: 'app.bsky.feed.post', rkey, record: post('a3'), swapRecord: a.body.cid }), 200)
  })
})

describe('authorization', () => {
  test("writing to another DID's repo is refused like the reference (403 AccountNotFound)", async () => {
    const res = await xpost(pds, 'com.atproto.repo.createRecord', {
      repo: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa',
      collection: 'app.bsky.feed.post',
      record: post('not mine'),
    }, token)
    expectXrpcError(res, 403, 'AccountNotFound', 'Account not found')
  })
})

describe('follow backlink conflicts', () => {
  test('a second follow of the same subject replaces the first', async () => {
    const follow = () => ({ $type: 'app.bsky.graph.follow', subject: 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb', createdAt: new Date().toISOString() })
    const first = expectStatus(await write('createRecord', { collection: 'app.bsky.graph.follow', record: follow() }), 200)
    const second = expectStatus(await write('createRecord', { collection: 'app.bsky.graph.follow', record: follow() }), 200)
    expect(second.body.uri).not.toBe(first.body.uri)
    expectXrpcError(await getRecord('app.bsky.graph.follow', rkeyOf(first.body.uri)), 400, 'RecordNotFound')
    const list = expectStatus(await xget(pds, 'com.atproto.repo.listRecords', { repo: pds.did, collection: 'app.bsky.graph.follow' }), 200)
    expect(list.body.records.map((r: any) => r.uri)).toEqual([second.body.uri])
  })

  test('with validate:false the older follow is kept (reference skips the check)', async () => {
    const subject = 'did:plc:cccccccccccccccccccccccc'
    const rec = () => ({ $type: 'app.bsky.graph.follow', subject, createdAt: new Date().toISOString() })
    const a = expectStatus(await write('createRecord', { collection: 'app.bsky.graph.follow', record: rec() }), 200)
    expectStatus(await write('createRecord', { collection: 'app.bsky.graph.follow', record: rec(), validate: false }), 200)
    expectStatus(await getRecord('app.bsky.graph.follow', rkeyOf(a.body.uri)), 200)
  })
})
