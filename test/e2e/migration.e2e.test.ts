/**
 * Bringing an existing account home, and taking it away again, with the
 * standard sequence (`goat account migrate`, helpers/migration.ts) between
 * real peers on loopback: the official @atproto/pds as the old (and later the
 * new) PDS and an in-memory @did-plc/server as the PLC directory.
 *
 * The account is lived-in (profile with avatar and banner, posts with
 * images, likes, follows, a list, preferences, edits and deletes). After the
 * move in: the PLC document names this PDS, the repo verifies against this
 * PDS's key, records, blobs (byte for byte) and preferences are identical,
 * the old account is deactivated, and the firehose announces the account so
 * a relay can verify every frame; then the owner posts here. After the move
 * out: the same holds on the other PDS, and this one serves the deactivated
 * state and refuses writes.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import { type PdsProcess, REPO_ROOT, startPds, stopPds } from './harness'
import { type Subscriber, subscribe } from './helpers/firehose-client'
import { isCommitFrame, StreamChecker } from './helpers/firehose-verify'
import { deactivateOld, migrate, referencePlcToken, seedAccount, type Side, snapshot, type Snapshot } from './helpers/migration'
import { HAVE_REFERENCE, type ReferencePds, spawnReference } from './helpers/reference-peer'
import { createSession, expectStatus, expectXrpcError, post, request, xget, xpost, verifyRepoCar } from './xrpc-client'

const HANDLE = 'alice.test'
/** The reference serves preferences itself only with an AppView configured; nothing is ever sent to this one. */
const NO_APPVIEW = { bskyAppViewUrl: 'http://127.0.0.1:1', bskyAppViewDid: 'did:web:appview.invalid' }
const OLD_PASSWORD = 'old-pds-password'
const EMAIL = 'alice@example.com'

let old: ReferencePds
let next: ReferencePds
let ours: PdsProcess
let ourRotationKey: string
let oldSide: Side
let before: Snapshot
let oldRecords: Map<string, string>

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')

const plcData = async (): Promise<Record<string, any>> => (await (await fetch(`${old.plcUrl}/${old.did}/data`)).json()) as Record<string, any>

/** Records (path → CID) of a repo as its signed CAR says, verified against `didKey`. */
const verifiedRecords = async (side: Side, didKey: string): Promise<Map<string, string>> => {
  const car = expectStatus(await xget(side, 'com.atproto.sync.getRepo', { did: old.did }, side.token), 200)
  return new Map([...(await verifyRepoCar(car.bytes, old.did, didKey)).records].sort())
}

/** `npm run plc-token` against the local state of our PDS. */
const ourPlcToken = async (): Promise<string> => {
  const r = spawnSync(join(REPO_ROOT, 'node_modules/node/bin/node'), ['scripts/plc-token.mjs', '--persist-to', ours.persistDir, '--json'], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
  })
  if (r.status !== 0) throw new Error(`npm run plc-token failed: ${r.stdout}${r.stderr}`)
  return JSON.parse(r.stdout).token
}

beforeAll(async () => {
  if (!HAVE_REFERENCE) throw new Error('test/peers is needed for the migration suite')
  old = (await spawnReference({ handle: HANDLE, password: OLD_PASSWORD, env: NO_APPVIEW }))!
  oldSide = { url: old.url, token: old.accessJwt }
  await seedAccount(oldSide, old.did)
  oldRecords = await verifiedRecords(oldSide, (await plcData()).verificationMethods.atproto)
  before = await snapshot(oldSide, old.did, oldRecords)
  ourRotationKey = hex(await (await Secp256k1Keypair.create({ exportable: true })).export())
  ours = await startPds({ handle: HANDLE, vars: { PDS_DID: old.did, PLC_URL: old.plcUrl, PDS_PLC_ROTATION_KEY: ourRotationKey } })
}, 240_000)

afterAll(async () => {
  await stopPds(ours)
  await next?.stop()
  await old?.stop()
}, 60_000)

describe('a deployment for an existing DID', () => {
  test('starts deactivated and empty: no genesis, no events, writes refused, the owner can log in', async () => {
    expect(expectStatus(await xget(ours, 'com.atproto.sync.getRepoStatus', { did: old.did }), 200).body).toEqual({ did: old.did, active: false, status: 'deactivated' })
    expectXrpcError(await xget(ours, 'com.atproto.sync.getLatestCommit', { did: old.did }), 400, 'RepoDeactivated')
    expect(expectStatus(await xget(ours, 'com.atproto.sync.listRepos'), 200).body.repos).toEqual([])
    const session = await createSession(ours, old.did, ours.password)
    expect(session).toMatchObject({ did: old.did, handle: HANDLE, active: false, status: 'deactivated' })
    expectXrpcError(
      await xpost(ours, 'com.atproto.repo.createRecord', { repo: old.did, collection: 'app.bsky.feed.post', record: post('too early') }, session.accessJwt),
      401,
      'AccountDeactivated',
    )
    // The status page says what the owner is looking at.
    const page = await request(ours, '/')
    expect(page.text).toContain('data-field="account" class="pill warn">deactivated')
    expect(page.text).toContain('waiting for the account to be migrated here')
    expect(expectStatus(await request(ours, '/status.json'), 200).body).toMatchObject({ account: { active: false, status: 'deactivated' }, repo: null })
    // The firehose has nothing to say yet.
    const sub = await subscribe(ours, 0)
    await Bun.sleep(500)
    expect(sub.frames).toEqual([])
    sub.ws.close()
    await sub.closed
  })
})

describe('moving in', () => {
  let live: Subscriber
  let ourSide: Side

  test("goat's sequence: createAccount with the old PDS's token, import, preferences, blobs, PLC, activate", async () => {
    live = await subscribe(ours)
    const report = await migrate({
      did: old.did,
      handle: HANDLE,
      newPassword: ours.password,
      email: EMAIL,
      from: oldSide,
      to: ours.url,
      plcToken: async () => {
        expectStatus(await xpost(oldSide, 'com.atproto.identity.requestPlcOperationSignature', undefined, oldSide.token), 200)
        return referencePlcToken(old.dataDir, old.did)
      },
    })
    ourSide = report.newSession
    expect(report.blobsCopied).toBe(before.blobs.size)
    expect(report.checkBefore).toMatchObject({
      activated: false,
      validDid: false,
      indexedRecords: oldRecords.size,
      expectedBlobs: before.blobs.size,
      importedBlobs: before.blobs.size,
      privateStateValues: before.preferences.length,
    })
    await deactivateOld(oldSide)
  }, 120_000)

  test('the PLC document names this PDS, its signing key and its rotation key', async () => {
    const data = await plcData()
    expect(data.services.atproto_pds).toEqual({ type: 'AtprotoPersonalDataServer', endpoint: ours.publicUrl })
    expect(data.verificationMethods.atproto).toBe(ours.didKey)
    expect(data.rotationKeys).toContain((await Secp256k1Keypair.import(ourRotationKey)).did())
    expect(expectStatus(await xget(ourSide, 'com.atproto.server.checkAccountStatus', undefined, ourSide.token), 200).body).toMatchObject({ activated: true, validDid: true })
  })

  test('the repo verifies against this PDS key; records, blobs and preferences are identical', async () => {
    expect(await verifiedRecords(ourSide, ours.didKey)).toEqual(oldRecords)
    const after = await snapshot(ourSide, old.did, oldRecords)
    expect([...after.blobs.keys()].sort()).toEqual([...before.blobs.keys()].sort())
    for (const [cid, bytes] of before.blobs) expect(after.blobs.get(cid)).toBe(bytes)
    expect(after.preferences).toEqual(before.preferences)
    expect(expectStatus(await xget(ours, 'com.atproto.sync.getRepoStatus', { did: old.did }), 200).body).toMatchObject({ active: true })
  })

  test('the old account is deactivated there', async () => {
    expect(expectStatus(await xget(oldSide, 'com.atproto.sync.getRepoStatus', { did: old.did }), 200).body).toMatchObject({ active: false, status: 'deactivated' })
  })

  test('the firehose: #identity, #account, #identity, a #sync a relay verifies with the new key, then the owner posts and the commit chains', async () => {
    const posted = expectStatus(
      await xpost(ours, 'com.atproto.repo.createRecord', { repo: old.did, collection: 'app.bsky.feed.post', record: post('home at last') }, ourSide.token),
      200,
    ).body
    await live.waitForCommit(posted.commit.cid)
    // submitPlcOperation announced the new DID document; activation the account, its handle and the re-signed head.
    expect(live.frames.map((f) => f.header.t)).toEqual(['#identity', '#account', '#identity', '#sync', '#commit'])
    expect(live.frames[0].body).toMatchObject({ did: old.did })
    expect(live.frames[1].body).toMatchObject({ did: old.did, active: true })
    expect(live.frames[2].body).toMatchObject({ did: old.did, handle: HANDLE })
    const checker = new StreamChecker({ didKey: ours.didKey, repo: old.did, contiguous: true })
    expect(await checker.checkAll(live.frames)).toEqual([])
    expect(checker.syncs).toBe(1)
    expect(live.frames.filter(isCommitFrame).map((f) => String(f.body.commit))).toEqual([posted.commit.cid])
    live.ws.close()
    await live.closed
  })
})

describe('moving out', () => {
  let nextSide: Side
  let ourSide: Side

  test('to another reference PDS with the same sequence; the PLC code comes from npm run plc-token', async () => {
    ourSide = { url: ours.url, token: (await createSession(ours, HANDLE, ours.password)).accessJwt }
    const records = await verifiedRecords(ourSide, ours.didKey)
    next = (await spawnReference({ handle: 'bob.test', password: 'bob-password', plcUrl: old.plcUrl, env: NO_APPVIEW }))!
    const report = await migrate({
      did: old.did,
      handle: HANDLE,
      newPassword: 'next-password',
      email: EMAIL,
      from: ourSide,
      to: next.url,
      plcToken: async () => {
        expectStatus(await xpost(ourSide, 'com.atproto.identity.requestPlcOperationSignature', undefined, ourSide.token), 200)
        return ourPlcToken()
      },
    })
    nextSide = report.newSession
    await deactivateOld(ourSide)
    const data = await plcData()
    expect(data.services.atproto_pds.endpoint).toBe(next.url)
    // The reference keeps the imported commit as it is until its next write (it does not re-sign on
    // activation, unlike us): the CAR it serves is still signed by this PDS's key.
    expect(await verifiedRecords(nextSide, ours.didKey)).toEqual(records)
    const there = await snapshot(nextSide, old.did, records)
    for (const [cid, bytes] of before.blobs) expect(there.blobs.get(cid)).toBe(bytes)
    expect(there.preferences).toEqual(before.preferences)
  }, 120_000)

  test('this PDS then serves the deactivated state: writes refused, the repo only to its owner', async () => {
    expect(expectStatus(await xget(ours, 'com.atproto.sync.getRepoStatus', { did: old.did }), 200).body).toEqual({ did: old.did, active: false, status: 'deactivated' })
    expectXrpcError(
      await xpost(ours, 'com.atproto.repo.createRecord', { repo: old.did, collection: 'app.bsky.feed.post', record: post('gone') }, ourSide.token),
      401,
      'AccountDeactivated',
    )
    expectXrpcError(await xget(ours, 'com.atproto.sync.getRepo', { did: old.did }), 400, 'RepoDeactivated')
    expectStatus(await xget(ours, 'com.atproto.sync.getRepo', { did: old.did }, ourSide.token), 200)
    expect(expectStatus(await xget(ours, 'com.atproto.server.getSession', undefined, ourSide.token), 200).body).toMatchObject({ active: false, status: 'deactivated' })
  })
})
