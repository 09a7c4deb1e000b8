/**
 * What a migration into this PDS must refuse, and that every refusal changes
 * nothing: createAccount without the right service token (none, another DID's,
 * wrong audience or method, expired, a session token) or without the owner
 * password; importRepo of a truncated CAR, a CAR signed by another key, a CAR
 * of another DID, or with an app password; a PLC operation that does not keep
 * this PDS in charge; activation before the DID document points here; an
 * import into an active account. Importing the same CAR twice is harmless and
 * a newer CAR of the same repo applies as a diff.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Secp256k1Keypair } from '@atproto/crypto'
import { blocksToCarFile, MemoryBlockstore, Repo, WriteOpAction } from '@atproto/repo'
import { type PdsProcess, startPds, stopPds } from './harness'
import { referencePlcToken, seedAccount, type Side } from './helpers/migration'
import { HAVE_REFERENCE, type ReferencePds, spawnReference } from './helpers/reference-peer'
import { createSession, expectStatus, expectXrpcError, post, request, xget, xpost, type XrpcResponse } from './xrpc-client'

const HANDLE = 'alice.test'
const NO_APPVIEW = { bskyAppViewUrl: 'http://127.0.0.1:1', bskyAppViewDid: 'did:web:appview.invalid' }

let old: ReferencePds
let other: ReferencePds
let ours: PdsProcess
let oldSide: Side
let otherSide: Side
let serviceDid: string

const serviceToken = async (side: Side, params: Record<string, string | number>): Promise<string> =>
  expectStatus(await xget(side, 'com.atproto.server.getServiceAuth', params, side.token), 200).body.token

const createAccount = (token: string | null, body: Record<string, unknown>): Promise<XrpcResponse> =>
  request(ours, '/xrpc/com.atproto.server.createAccount', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  })

const importCar = (token: string, car: Uint8Array, type = 'application/vnd.ipld.car'): Promise<XrpcResponse> =>
  request(ours, '/xrpc/com.atproto.repo.importRepo', { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': type }, body: car })

const status = async (token: string) => expectStatus(await xget(ours, 'com.atproto.server.checkAccountStatus', undefined, token), 200).body

const goodBody = () => ({ did: old.did, handle: HANDLE, password: ours.password })

beforeAll(async () => {
  if (!HAVE_REFERENCE) throw new Error('test/peers is needed for the migration suite')
  old = (await spawnReference({ handle: HANDLE, password: 'old-password', env: NO_APPVIEW }))!
  other = (await spawnReference({ handle: 'mallory.test', password: 'mallory-password', plcUrl: old.plcUrl, env: NO_APPVIEW }))!
  oldSide = { url: old.url, token: old.accessJwt }
  otherSide = { url: other.url, token: other.accessJwt }
  await seedAccount(oldSide, old.did, { posts: 20 })
  ours = await startPds({ handle: HANDLE, vars: { PDS_DID: old.did, PLC_URL: old.plcUrl } })
  serviceDid = expectStatus(await xget(ours, 'com.atproto.server.describeServer'), 200).body.did
}, 240_000)

afterAll(async () => {
  await stopPds(ours)
  await other?.stop()
  await old?.stop()
}, 60_000)

describe('createAccount', () => {
  const lxm = 'com.atproto.server.createAccount'

  test('refuses a missing, foreign, misaddressed, wrong-method, expired or session token, and a wrong password; nothing changes', async () => {
    expectXrpcError(await createAccount(null, goodBody()), 401, 'AuthenticationRequired', `Missing auth to create account with did: ${old.did}`)
    expectXrpcError(await createAccount(await serviceToken(otherSide, { aud: serviceDid, lxm }), goodBody()), 401, 'UntrustedIss')
    expectXrpcError(await createAccount(await serviceToken(oldSide, { aud: 'did:web:elsewhere.example', lxm }), goodBody()), 401, 'BadJwtAudience')
    expectXrpcError(await createAccount(await serviceToken(oldSide, { aud: serviceDid, lxm: 'com.atproto.repo.createRecord' }), goodBody()), 401, 'BadJwtLexiconMethod')
    const shortLived = await serviceToken(oldSide, { aud: serviceDid, lxm, exp: Math.floor(Date.now() / 1000) + 1 })
    await Bun.sleep(2100)
    expectXrpcError(await createAccount(shortLived, goodBody()), 401, 'JwtExpired')
    expectXrpcError(await createAccount(old.accessJwt, goodBody()), 401, 'BadJwtType')
    const token = await serviceToken(oldSide, { aud: serviceDid, lxm })
    expectXrpcError(await createAccount(token, { ...goodBody(), password: 'not-the-owner-password' }), 400, 'InvalidRequest', /owner password/)
    expectXrpcError(await createAccount(token, { ...goodBody(), did: other.did }), 400, 'InvalidRequest', /hosts only/)
    expectXrpcError(await createAccount(token, { handle: HANDLE, password: ours.password }), 400, 'InvalidRequest', /arrives by migration/)
    // Nothing happened: still deactivated, no repo, the handle as configured.
    expect(expectStatus(await xget(ours, 'com.atproto.sync.getRepoStatus', { did: old.did }), 200).body).toEqual({ did: old.did, active: false, status: 'deactivated' })
  }, 60_000)
})

describe('importRepo, the PLC operation and activation', () => {
  let session: { accessJwt: string }
  let oldCar: Uint8Array

  beforeAll(async () => {
    const token = await serviceToken(oldSide, { aud: serviceDid, lxm: 'com.atproto.server.createAccount' })
    session = expectStatus(await createAccount(token, goodBody()), 200).body
    // Running it again before activation is harmless (a resumed migration).
    expectStatus(await createAccount(await serviceToken(oldSide, { aud: serviceDid, lxm: 'com.atproto.server.createAccount' }), goodBody()), 200)
    oldCar = expectStatus(await xget(oldSide, 'com.atproto.sync.getRepo', { did: old.did }, oldSide.token), 200).bytes
  }, 60_000)

  test('a truncated CAR, a CAR signed by another key, another DID, garbage, the wrong type or an app password: 400, nothing written', async () => {
    expectXrpcError(await importCar(session.accessJwt, oldCar.slice(0, Math.floor(oldCar.byteLength * 0.6))), 400, 'InvalidRequest', /truncated|whole repo/)
    // A repo of the same DID signed by a key the DID document does not list.
    const storage = new MemoryBlockstore()
    const forged = await Repo.create(storage, old.did, await Secp256k1Keypair.create(), [
      { action: WriteOpAction.Create, collection: 'app.bsky.feed.post', rkey: '3kaaaaaaaaaaa', record: post('forged') as never },
    ])
    expectXrpcError(await importCar(session.accessJwt, await blocksToCarFile(forged.cid, storage.blocks)), 400, 'InvalidRequest', /not signed by the key/)
    const otherCar = expectStatus(await xget(otherSide, 'com.atproto.sync.getRepo', { did: other.did }, otherSide.token), 200).bytes
    expectXrpcError(await importCar(session.accessJwt, otherCar), 400, 'InvalidRequest', /belongs to/)
    expectXrpcError(await importCar(session.accessJwt, new TextEncoder().encode('not a car at all')), 400, 'InvalidRequest')
    expectXrpcError(await importCar(session.accessJwt, oldCar, 'application/json'), 400, 'InvalidRequest', /Content-Type/)
    const appPassword = expectStatus(await xpost(ours, 'com.atproto.server.createAppPassword', { name: 'app' }, session.accessJwt), 200).body.password
    const appSession = await createSession(ours, old.did, appPassword)
    expectXrpcError(await importCar(appSession.accessJwt, oldCar), 400, 'InvalidToken', 'Bad token scope')
    expect(await status(session.accessJwt)).toMatchObject({ repoCommit: '', indexedRecords: 0, repoBlocks: 0 })
  })

  test('the same CAR twice is harmless; a newer CAR of the same repo applies as a diff', async () => {
    expectStatus(await importCar(session.accessJwt, oldCar), 200)
    const first = await status(session.accessJwt)
    expectStatus(await importCar(session.accessJwt, oldCar), 200)
    expect(await status(session.accessJwt)).toEqual(first)
    const posted = expectStatus(
      await xpost(oldSide, 'com.atproto.repo.createRecord', { repo: old.did, collection: 'app.bsky.feed.post', record: post('one more') }, oldSide.token),
      200,
    ).body
    const newer = expectStatus(await xget(oldSide, 'com.atproto.sync.getRepo', { did: old.did }, oldSide.token), 200).bytes
    expectStatus(await importCar(session.accessJwt, newer), 200)
    const second = await status(session.accessJwt)
    expect(second.indexedRecords).toBe(first.indexedRecords + 1)
    expect(second.repoCommit).toBe(posted.commit.cid)
    // An older CAR after a newer one is refused.
    expectXrpcError(await importCar(session.accessJwt, oldCar), 400, 'InvalidRequest', /newer/)
  })

  test('a PLC operation that does not keep this PDS in charge is refused; activation waits for the DID document', async () => {
    const recommended = expectStatus(await xget(ours, 'com.atproto.identity.getRecommendedDidCredentials', undefined, session.accessJwt), 200).body
    expectXrpcError(await xpost(ours, 'com.atproto.server.activateAccount', undefined, session.accessJwt), 400, 'InvalidRequest', 'Server rotation key not included in PLC DID data')
    const sign = async (change: Record<string, unknown>) => {
      expectStatus(await xpost(oldSide, 'com.atproto.identity.requestPlcOperationSignature', undefined, oldSide.token), 200)
      return expectStatus(
        await xpost(oldSide, 'com.atproto.identity.signPlcOperation', { ...recommended, ...change, token: referencePlcToken(old.dataDir, old.did) }, oldSide.token),
        200,
      ).body.operation
    }
    const elsewhere = await sign({ services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: 'https://elsewhere.example' } } })
    expectXrpcError(await xpost(ours, 'com.atproto.identity.submitPlcOperation', { operation: elsewhere }, session.accessJwt), 400, 'InvalidRequest', 'Incorrect endpoint on atproto_pds service')
    const otherKey = await sign({ verificationMethods: { atproto: (await Secp256k1Keypair.create()).did() } })
    expectXrpcError(await xpost(ours, 'com.atproto.identity.submitPlcOperation', { operation: otherKey }, session.accessJwt), 400, 'InvalidRequest', 'Incorrect signing key')
    const noRotation = await sign({ rotationKeys: [(await Secp256k1Keypair.create()).did()] })
    expectXrpcError(
      await xpost(ours, 'com.atproto.identity.submitPlcOperation', { operation: noRotation }, session.accessJwt),
      400,
      'InvalidRequest',
      "Rotation keys do not include server's rotation key",
    )
    // None of them reached the directory: it still names the old PDS.
    const data = (await (await fetch(`${old.plcUrl}/${old.did}/data`)).json()) as { services: { atproto_pds: { endpoint: string } } }
    expect(data.services.atproto_pds.endpoint).toBe(old.url)
    // The right one goes through; then activation succeeds and an import into the active account is refused.
    expectStatus(await xpost(ours, 'com.atproto.identity.submitPlcOperation', { operation: await sign({}) }, session.accessJwt), 200)
    expectStatus(await xpost(ours, 'com.atproto.server.activateAccount', undefined, session.accessJwt), 200)
    expectXrpcError(await importCar(session.accessJwt, oldCar), 400, 'InvalidRequest', /account is active/)
  }, 60_000)
})
