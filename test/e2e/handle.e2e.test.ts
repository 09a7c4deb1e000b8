/**
 * com.atproto.identity.updateHandle: the new handle must already resolve to
 * the account's DID (a DNS TXT record `_atproto.<handle>`, checked here over
 * DNS-over-HTTPS against a loopback stub resolver, or the handle's
 * https well-known); then it is stored in D1, announced with `#identity`, and
 * put in the DID document: served at once by a did:web of this host, sent as
 * a PLC operation signed with the PDS's rotation key for a did:plc (against
 * the in-memory PLC directory of the reference peer).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Secp256k1Keypair } from '@atproto/crypto'
import { encode } from '@atproto/lex-cbor'
import { base32 } from 'multiformats/bases/base32'
import { createHash } from 'node:crypto'
import { freePort, type PdsProcess, startPds, stopPds } from './harness'
import { subscribe } from './helpers/firehose-client'
import { HAVE_REFERENCE, type ReferencePds, spawnReference } from './helpers/reference-peer'
import { createSession, expectStatus, expectXrpcError, request, xget, xpost } from './xrpc-client'

/** handle → DID the stub resolver answers `_atproto.<handle>` TXT with. */
const txt = new Map<string, string>()
const doh = Bun.serve({
  port: 0,
  hostname: '127.0.0.1',
  fetch: (req) => {
    const name = new URL(req.url).searchParams.get('name') ?? ''
    const did = txt.get(name.replace(/^_atproto\./, ''))
    return Response.json({ Status: did ? 0 : 3, Answer: did ? [{ name, type: 16, data: `"did=${did}"` }] : [] }, { headers: { 'content-type': 'application/dns-json' } })
  },
})
const DOH = { DNS_OVER_HTTPS_URL: `http://127.0.0.1:${doh.port}/dns-query` }

afterAll(() => {
  doh.stop(true)
})

describe('a did:web account', () => {
  let pds: PdsProcess
  let token: string
  beforeAll(async () => {
    pds = await startPds({ vars: DOH })
    token = (await createSession(pds, pds.handle, pds.password)).accessJwt
  }, 120_000)
  afterAll(() => stopPds(pds), 30_000)

  test('a handle that does not resolve, or resolves to someone else, is refused and nothing changes', async () => {
    expectXrpcError(await xpost(pds, 'com.atproto.identity.updateHandle', { handle: 'nobody.example.com' }, token), 400, 'InvalidRequest', /does not resolve to/)
    txt.set('someone.example.com', 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa')
    expectXrpcError(await xpost(pds, 'com.atproto.identity.updateHandle', { handle: 'someone.example.com' }, token), 400, 'InvalidRequest', /does not resolve to/)
    expect(expectStatus(await xget(pds, 'com.atproto.server.getSession', undefined, token), 200).body.handle).toBe(pds.handle)
  })

  test('a handle that resolves here: stored, in did.json at once, resolved locally, announced with #identity', async () => {
    const live = await subscribe(pds)
    txt.set('alice.example.com', pds.did)
    expectStatus(await xpost(pds, 'com.atproto.identity.updateHandle', { handle: 'Alice.Example.com' }, token), 200)
    expect(expectStatus(await xget(pds, 'com.atproto.server.getSession', undefined, token), 200).body.handle).toBe('alice.example.com')
    const didDoc = expectStatus(await request(pds, '/.well-known/did.json'), 200).body
    expect(didDoc.alsoKnownAs).toEqual(['at://alice.example.com'])
    expect(expectStatus(await xget(pds, 'com.atproto.identity.resolveHandle', { handle: 'alice.example.com' }), 200).body).toEqual({ did: pds.did })
    expect(expectStatus(await xget(pds, 'com.atproto.repo.describeRepo', { repo: 'alice.example.com' }), 200).body).toMatchObject({ handle: 'alice.example.com', handleIsCorrect: true })
    await live.waitUntil(() => live.frames.some((f) => f.header.t === '#identity'), '#identity')
    expect(live.frames.find((f) => f.header.t === '#identity')?.body).toMatchObject({ did: pds.did, handle: 'alice.example.com' })
    live.ws.close()
    await live.closed
    // It survives a restart: D1, not the PDS_HANDLE setting, holds it now.
    await pds.restart()
    expect(expectStatus(await xget(pds, 'com.atproto.identity.resolveHandle', { handle: 'alice.example.com' }), 200).body).toEqual({ did: pds.did })
  }, 60_000)
})

describe('a did:plc account', () => {
  let ref: ReferencePds
  let pds: PdsProcess
  let did: string

  beforeAll(async () => {
    if (!HAVE_REFERENCE) throw new Error('test/peers is needed for its PLC directory')
    ref = (await spawnReference({ handle: 'someone.test', password: 'pw' }))!
    // A fresh did:plc made for this PDS, its rotation key the PDS's own (what npm run setup does).
    const port = await freePort()
    const signing = await Secp256k1Keypair.create({ exportable: true })
    const rotation = await Secp256k1Keypair.create({ exportable: true })
    const unsigned = {
      type: 'plc_operation',
      rotationKeys: [rotation.did()],
      verificationMethods: { atproto: signing.did() },
      alsoKnownAs: ['at://carol.test'],
      services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: `http://localhost:${port}` } },
      prev: null,
    }
    const op = { ...unsigned, sig: Buffer.from(await rotation.sign(encode(unsigned as never))).toString('base64url') }
    did = `did:plc:${base32.baseEncode(createHash('sha256').update(encode(op as never)).digest()).slice(0, 24)}`
    const res = await fetch(`${ref.plcUrl}/${did}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(op) })
    if (!res.ok) throw new Error(`PLC refused the genesis op: ${await res.text()}`)
    const hex = async (k: Secp256k1Keypair) => Buffer.from(await k.export()).toString('hex')
    pds = await startPds({
      port,
      handle: 'carol.test',
      signingKeyHex: await hex(signing),
      vars: { ...DOH, PDS_DID: did, PLC_URL: ref.plcUrl, PDS_PLC_ROTATION_KEY: await hex(rotation) },
    })
  }, 120_000)

  afterAll(async () => {
    await stopPds(pds)
    await ref?.stop()
  }, 30_000)

  test('a fresh did:plc starts active with its genesis commit; a handle change is a PLC operation the directory accepts', async () => {
    const token = (await createSession(pds, did, pds.password)).accessJwt
    expect(expectStatus(await xget(pds, 'com.atproto.sync.getRepoStatus', { did }), 200).body).toMatchObject({ did, active: true })
    txt.set('carol.example.org', did)
    expectStatus(await xpost(pds, 'com.atproto.identity.updateHandle', { handle: 'carol.example.org' }, token), 200)
    const data = (await (await fetch(`${ref.plcUrl}/${did}/data`)).json()) as { alsoKnownAs: string[] }
    expect(data.alsoKnownAs).toEqual(['at://carol.example.org'])
    expect(expectStatus(await xget(pds, 'com.atproto.server.getSession', undefined, token), 200).body).toMatchObject({ handle: 'carol.example.org' })
  }, 60_000)
})
