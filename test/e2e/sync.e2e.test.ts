/**
 * com.atproto.sync.*: every CAR is checked with @atproto/repo (signature with
 * the harness's key, MST structure, inclusion and absence proofs), and the
 * error names follow the reference's api/com/atproto/sync/*.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Secp256k1Keypair } from '@atproto/crypto'
import { readCar, readCarWithRoot, verifyProofs, verifyRecords } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { type PdsProcess, startPds, stopPds } from './harness'
import {
  cid,
  createSession,
  expectStatus,
  expectXrpcError,
  listAllRecords,
  post,
  rkeyOf,
  verifyRepoCar,
  xget,
  xpost,
} from './xrpc-client'

let pds: PdsProcess
let token: string
const created: { uri: string; cid: string; commit: { cid: string; rev: string } }[] = []
const UNKNOWN_DID = 'did:plc:zzzzzzzzzzzzzzzzzzzzzzzz'

beforeAll(async () => {
  pds = await startPds()
  token = (await createSession(pds, pds.handle, pds.password)).accessJwt
  for (let i = 0; i < 6; i++) {
    const res = await xpost(pds, 'com.atproto.repo.createRecord', {
      repo: pds.did,
      collection: i % 2 ? 'app.bsky.feed.post' : 'com.example.e2e.sync',
      record: i % 2 ? post(`post ${i}`) : { i },
    }, token)
    created.push(expectStatus(res, 200).body)
  }
  // One deletion, so the repo is not just a pile of creates.
  expectStatus(await xpost(pds, 'com.atproto.repo.deleteRecord', {
    repo: pds.did,
    collection: 'com.example.e2e.sync',
    rkey: rkeyOf(created[0]!.uri),
  }, token), 200)
}, 120_000)

afterAll(async () => {
  await stopPds(pds)
})

const latest = async (): Promise<{ cid: string; rev: string }> =>
  expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body

describe('getLatestCommit', () => {
  test('{cid, rev} of the head commit', async () => {
    const res = expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200)
    expect(Object.keys(res.body).sort()).toEqual(['cid', 'rev'])
    expect(cid(res.body.cid).toString()).toBe(res.body.cid)
    expect(res.body.rev > created.at(-1)!.commit.rev).toBe(true)
  })
})

describe('getRepo', () => {
  test('a CAR that verifies and holds exactly the listed records', async () => {
    const res = expectStatus(await xget(pds, 'com.atproto.sync.getRepo', { did: pds.did }), 200)
    expect(res.headers.get('content-type')).toContain('application/vnd.ipld.car')
    const repo = await verifyRepoCar(res.bytes, pds.did, pds.didKey)
    const head = await latest()
    expect(repo.root).toBe(head.cid)
    expect(repo.rev).toBe(head.rev)
    const listed = await listAllRecords(pds, pds.did)
    expect(repo.records.size).toBe(5)
    expect(new Map([...repo.records].sort())).toEqual(new Map([...listed].sort()))
    expect(repo.records.has(`com.example.e2e.sync/${rkeyOf(created[0]!.uri)}`)).toBe(false)
  })

  test('fails verification with another key (the check is real)', async () => {
    const res = expectStatus(await xget(pds, 'com.atproto.sync.getRepo', { did: pds.did }), 200)
    const other = (await Secp256k1Keypair.create()).did()
    await expect(verifyRepoCar(res.bytes, pds.did, other)).rejects.toThrow()
  })

  test('since=<rev> returns only blocks written after that rev', async () => {
    const before = await latest()
    const res = await xpost(pds, 'com.atproto.repo.createRecord', {
      repo: pds.did,
      collection: 'app.bsky.feed.post',
      record: post('after since'),
    }, token)
    const fresh = expectStatus(res, 200).body
    const full = expectStatus(await xget(pds, 'com.atproto.sync.getRepo', { did: pds.did }), 200)
    const diff = expectStatus(await xget(pds, 'com.atproto.sync.getRepo', { did: pds.did, since: before.rev }), 200)
    const car = await readCarWithRoot(diff.bytes)
    expect(car.root.toString()).toBe(fresh.commit.cid)
    expect(car.blocks.has(cid(fresh.commit.cid))).toBe(true)
    expect(car.blocks.has(cid(fresh.cid))).toBe(true)
    expect(car.blocks.has(cid(created[1]!.cid))).toBe(false)
    expect(car.blocks.has(cid(before.cid))).toBe(false)
    const fullCar = await readCarWithRoot(full.bytes)
    expect(car.blocks.size).toBeLessThan(fullCar.blocks.size)
  })

  test('an unknown DID is 400 RepoNotFound', async () => {
    const res = await xget(pds, 'com.atproto.sync.getRepo', { did: UNKNOWN_DID })
    expectXrpcError(res, 400, 'RepoNotFound', `Could not find repo for DID: ${UNKNOWN_DID}`)
  })
})

describe('sync.getRecord', () => {
  test('an inclusion proof for an existing record', async () => {
    const rec = created[1]!
    const rkey = rkeyOf(rec.uri)
    const res = expectStatus(
      await xget(pds, 'com.atproto.sync.getRecord', { did: pds.did, collection: 'app.bsky.feed.post', rkey }),
      200,
    )
    expect(res.headers.get('content-type')).toContain('application/vnd.ipld.car')
    const { verified, unverified } = await verifyProofs(
      res.bytes,
      [{ collection: 'app.bsky.feed.post', rkey, cid: cid(rec.cid) }],
      pds.did,
      pds.didKey,
    )
    expect(unverified).toEqual([])
    expect(verified.length).toBe(1)
    const records = await verifyRecords(res.bytes, pds.did, pds.didKey)
    const found = records.find((r) => r.rkey === rkey)
    expect(found?.collection).toBe('app.bsky.feed.post')
    expect((found?.record as { text?: string }).text).toBe('post 1')
    const car = await readCarWithRoot(res.bytes)
    expect(car.root.toString()).toBe((await latest()).cid)
  })

  test('a proof of absence for a missing record', async () => {
    const rkey = rkeyOf(created[0]!.uri) // deleted in beforeAll
    const res = expectStatus(
      await xget(pds, 'com.atproto.sync.getRecord', { did: pds.did, collection: 'com.example.e2e.sync', rkey }),
      200,
    )
    const { verified, unverified } = await verifyProofs(
      res.bytes,
      [{ collection: 'com.example.e2e.sync', rkey, cid: null }],
      pds.did,
      pds.didKey,
    )
    expect(unverified).toEqual([])
    expect(verified.length).toBe(1)
    expect(await verifyRecords(res.bytes, pds.did, pds.didKey)).toEqual([])
  })

  test('an unknown DID is 400 RepoNotFound', async () => {
    const res = await xget(pds, 'com.atproto.sync.getRecord', {
      did: UNKNOWN_DID,
      collection: 'app.bsky.feed.post',
      rkey: '3jzfcijpj2z2a',
    })
    expectXrpcError(res, 400, 'RepoNotFound')
  })
})

describe('getBlocks', () => {
  test('returns the requested blocks', async () => {
    const head = await latest()
    const cids = [head.cid, created[1]!.cid, created[3]!.cid]
    const res = expectStatus(await xget(pds, 'com.atproto.sync.getBlocks', { did: pds.did, cids }), 200)
    expect(res.headers.get('content-type')).toContain('application/vnd.ipld.car')
    const car = await readCar(res.bytes)
    for (const c of cids) expect(car.blocks.has(cid(c))).toBe(true)
    expect(car.blocks.size).toBe(3)
  })

  test('a missing block is 400 with the reference message', async () => {
    // A well-formed dag-cbor CID of content that was never written.
    const missing = CID.createV1(0x71, await sha256.digest(new TextEncoder().encode(`never ${Date.now()}`))).toString()
    const res = await xget(pds, 'com.atproto.sync.getBlocks', { did: pds.did, cids: [created[1]!.cid, missing] })
    expectXrpcError(res, 400, 'InvalidRequest', `Could not find cids: ${missing}`)
  })

  test('an unknown DID is 400 RepoNotFound', async () => {
    const res = await xget(pds, 'com.atproto.sync.getBlocks', { did: UNKNOWN_DID, cids: [created[1]!.cid] })
    expectXrpcError(res, 400, 'RepoNotFound')
  })
})

describe('getRepoStatus / listRepos', () => {
  test('getRepoStatus: {did, active: true, rev}', async () => {
    const res = expectStatus(await xget(pds, 'com.atproto.sync.getRepoStatus', { did: pds.did }), 200)
    expect(res.body).toEqual({ did: pds.did, active: true, rev: (await latest()).rev })
  })

  test('getRepoStatus of an unknown DID is 400 RepoNotFound', async () => {
    expectXrpcError(await xget(pds, 'com.atproto.sync.getRepoStatus', { did: UNKNOWN_DID }), 400, 'RepoNotFound')
  })

  test('listRepos lists the one repo with head and rev', async () => {
    const res = expectStatus(await xget(pds, 'com.atproto.sync.listRepos'), 200)
    const head = await latest()
    expect(res.body.repos).toEqual([{ did: pds.did, head: head.cid, rev: head.rev, active: true }])
  })

  test('getLatestCommit of an unknown DID is 400 RepoNotFound', async () => {
    expectXrpcError(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: UNKNOWN_DID }), 400, 'RepoNotFound')
  })
})
