/**
 * Identity: com.atproto.identity.resolveHandle, /.well-known/atproto-did and
 * the did:web document at /.well-known/did.json (atproto DID spec: the
 * `#atproto` Multikey verification method and the `#atproto_pds` service).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { type PdsProcess, startPds, stopPds } from './harness'
import { readCarWithRoot } from '@atproto/repo'
import { imagePost, makeJpeg, makePng, uploadBlob } from './helpers/blobs'
import { createSession, expectStatus, expectXrpcError, request, xget, xpost } from './xrpc-client'

let pds: PdsProcess

beforeAll(async () => {
  pds = await startPds()
}, 120_000)

afterAll(async () => {
  await stopPds(pds)
})

describe('resolveHandle', () => {
  test('our handle → {did}', async () => {
    const res = expectStatus(await xget(pds, 'com.atproto.identity.resolveHandle', { handle: pds.handle }), 200)
    expect(res.body).toEqual({ did: pds.did })
  })

  test('handles are case-insensitive', async () => {
    const res = await xget(pds, 'com.atproto.identity.resolveHandle', { handle: pds.handle.toUpperCase() })
    expect(expectStatus(res, 200).body).toEqual({ did: pds.did })
  })

  test('an unknown handle → 400 "Unable to resolve handle"', async () => {
    const res = await xget(pds, 'com.atproto.identity.resolveHandle', { handle: 'nobody-at-all.test' })
    expect(res.status).toBe(400)
    expect(res.body?.message).toBe('Unable to resolve handle')
    // Reference: HandleNotFound for a handle under its own domains, else a plain InvalidRequest.
    expect(['HandleNotFound', 'InvalidRequest']).toContain(res.body?.error)
  }, 40_000)

  test('a malformed handle → 400 InvalidRequest', async () => {
    expectXrpcError(await xget(pds, 'com.atproto.identity.resolveHandle', { handle: 'not a handle' }), 400, 'InvalidRequest')
  })

  test('a missing handle param → 400 InvalidRequest', async () => {
    expectXrpcError(await xget(pds, 'com.atproto.identity.resolveHandle'), 400, 'InvalidRequest')
  })
})

describe('/.well-known/atproto-did', () => {
  test('answers the DID as text/plain', async () => {
    const res = expectStatus(await request(pds, '/.well-known/atproto-did'), 200)
    expect(res.headers.get('content-type')).toStartWith('text/plain')
    expect(res.text.trim()).toBe(pds.did)
  })
})

describe('/.well-known/did.json', () => {
  let doc: any

  beforeAll(async () => {
    const res = expectStatus(await request(pds, '/.well-known/did.json'), 200)
    expect(res.headers.get('content-type')).toContain('json')
    doc = JSON.parse(res.text)
  })

  test('id and alsoKnownAs', () => {
    expect(doc.id).toBe(pds.did)
    expect(doc['@context']).toContain('https://www.w3.org/ns/did/v1')
    expect(doc.alsoKnownAs).toEqual([`at://${pds.handle}`])
  })

  test('#atproto Multikey holds the signing key', () => {
    const vms = (doc.verificationMethod ?? []).filter((vm: any) => vm.id === `${pds.did}#atproto` || vm.id === '#atproto')
    expect(vms.length).toBe(1)
    const vm = vms[0]
    expect(vm.type).toBe('Multikey')
    expect(vm.controller).toBe(pds.did)
    expect(`did:key:${vm.publicKeyMultibase}`).toBe(pds.didKey)
  })

  test('#atproto_pds service points at this server', () => {
    const svcs = (doc.service ?? []).filter((s: any) => s.id === '#atproto_pds' || s.id === `${pds.did}#atproto_pds`)
    expect(svcs.length).toBe(1)
    expect(svcs[0].type).toBe('AtprotoPersonalDataServer')
    // The endpoint is the URL the PDS is configured with (PDS_HOSTNAME=localhost:<port>).
    expect(svcs[0].serviceEndpoint).toBe(pds.publicUrl)
  })

  test('the same document is served by describeRepo and getSession', async () => {
    const desc = expectStatus(await xget(pds, 'com.atproto.repo.describeRepo', { repo: pds.did }), 200)
    expect(desc.body.didDoc).toEqual(doc)
    const session = await createSession(pds, pds.handle, pds.password)
    expect(session.didDoc).toEqual(doc)
    const got = expectStatus(await xget(pds, 'com.atproto.server.getSession', undefined, session.accessJwt), 200)
    expect(got.body.didDoc).toEqual(doc)
  })
})

describe('checkAccountStatus (what migration tools ask)', () => {
  test('figures equal what the repo and blobs really hold; validDid compares the DID document with our key and URL', async () => {
    const token = (await createSession(pds, pds.handle, pds.password)).accessJwt
    expectXrpcError(await xget(pds, 'com.atproto.server.checkAccountStatus'), 401, 'AuthMissing')
    const image = await uploadBlob(pds, token, makePng(), 'image/png')
    await uploadBlob(pds, token, makeJpeg(), 'image/jpeg') // uploaded, never referenced: not expected
    const record = { ...imagePost('with an image', image), createdAt: new Date().toISOString() }
    expectStatus(await xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, collection: 'app.bsky.feed.post', record }, token), 200)
    expectStatus(await xpost(pds, 'app.bsky.actor.putPreferences', { preferences: [{ $type: 'app.bsky.actor.defs#adultContentPref', enabled: false }] }, token), 200)

    const status = expectStatus(await xget(pds, 'com.atproto.server.checkAccountStatus', undefined, token), 200).body
    const head = expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body
    const car = expectStatus(await xget(pds, 'com.atproto.sync.getRepo', { did: pds.did }), 200)
    const { root, blocks } = await readCarWithRoot(car.bytes)
    const records = expectStatus(await xget(pds, 'com.atproto.repo.listRecords', { repo: pds.did, collection: 'app.bsky.feed.post' }), 200).body.records
    expect(status).toEqual({
      activated: true,
      validDid: true,
      repoCommit: head.cid,
      repoRev: head.rev,
      repoBlocks: blocks.size,
      indexedRecords: records.length,
      privateStateValues: 1,
      expectedBlobs: 1,
      importedBlobs: 1,
    })
    expect(root.toString()).toBe(head.cid)
    expect(records.length).toBeGreaterThan(0)
  })
})
