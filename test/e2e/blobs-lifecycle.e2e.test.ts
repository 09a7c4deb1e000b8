/**
 * Blobs, part 2: which blobs a repo lists (com.atproto.sync.listBlobs,
 * com.atproto.repo.listMissingBlobs), garbage collection by the cron
 * (dereferenced blobs, expired temporary uploads), and durability across a
 * restart. The cron runs through wrangler dev's `/cdn-cgi/local/scheduled`.
 * Expected answers follow the reference PDS (sync/listBlobs.ts,
 * repo/listMissingBlobs.ts, actor-store/blob/reader.ts and transactor.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import {
  type BlobRefJson,
  blobCid,
  countStored,
  describeR2,
  getBlob,
  imagePost,
  isBlobNotFound,
  makeJpeg,
  makePng,
  makeRandomBinary,
  pollUntil,
  sleep,
  triggerCron,
  uploadBlob,
} from './helpers/blobs'
import { type PdsProcess, startPds, stopPds } from './harness'
import { usePds } from './use-pds'
import { createSession, expectStatus, expectXrpcError, rkeyOf, show, xget, xpost } from './xrpc-client'

let pds: PdsProcess
let token: string

usePds((started, accessJwt) => {
  pds = started
  token = accessJwt
})

interface Target {
  url: string
  did: string
  persistDir: string
}

const createPost = async (on: Target, jwt: string, ...images: BlobRefJson[]): Promise<string> => {
  const res = await xpost(on, 'com.atproto.repo.createRecord', {
    repo: on.did,
    collection: 'app.bsky.feed.post',
    record: imagePost('with images', ...images),
  }, jwt)
  return expectStatus(res, 200).body.uri
}
/** A record of an unknown lexicon holding any blob (post images must be image/*). */
const createFile = async (on: Target, jwt: string, file: BlobRefJson): Promise<string> => {
  const res = await xpost(on, 'com.atproto.repo.createRecord', {
    repo: on.did,
    collection: 'com.example.e2e.file',
    record: { $type: 'com.example.e2e.file', file },
  }, jwt)
  return expectStatus(res, 200).body.uri
}
const deleteRecord = async (on: Target, jwt: string, uri: string): Promise<void> => {
  const [, , , collection, rkey] = uri.split('/')
  expectStatus(await xpost(on, 'com.atproto.repo.deleteRecord', { repo: on.did, collection, rkey }, jwt), 200)
}
const listBlobs = (params: Record<string, string | number | undefined>) =>
  xget(pds, 'com.atproto.sync.listBlobs', { did: pds.did, ...params })
const allListed = async (): Promise<string[]> =>
  expectStatus(await listBlobs({ limit: 1000 }), 200).body.cids
const latestRev = async (): Promise<string> =>
  expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body.rev
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b))

/**
 * Runs the cron (again every 3 s) until `gone()` holds, for at most 20 s;
 * then runs it once more, so survivors are checked after a complete run.
 */
const collectUntil = async (on: Target, gone: () => Promise<boolean>, what: () => string): Promise<void> => {
  await triggerCron(on)
  let lastRun = Date.now()
  await pollUntil(
    async () => {
      if (await gone()) return true
      if (Date.now() - lastRun > 3_000) {
        await triggerCron(on)
        lastRun = Date.now()
      }
      return false
    },
    { timeoutMs: 20_000, intervalMs: 300, describe: what },
  )
  await triggerCron(on)
}

/** getBlob says BlobNotFound and no R2 object or body file holds the bytes. */
const blobGone = async (on: Target, bytes: Uint8Array): Promise<{ gone: boolean; state: string }> => {
  const res = await getBlob(on, on.did, blobCid(bytes))
  const stored = await countStored(on.persistDir, bytes)
  return {
    gone: isBlobNotFound(res) && stored.objects === 0 && stored.files === 0,
    state: `getBlob: ${show(res).slice(0, 120)}; objects with these bytes: ${stored.objects}, files: ${stored.files}; R2: ${describeR2(stored.state)}`,
  }
}

/** Runs the cron until these bytes are gone (getBlob and R2), at most 20 s. */
const expectCollected = async (on: Target, bytes: Uint8Array, what: string): Promise<void> => {
  let state = ''
  await collectUntil(
    on,
    async () => {
      const g = await blobGone(on, bytes)
      state = g.state
      return g.gone
    },
    () => `${what}: ${state}`,
  )
}

const expectServed = async (on: Target, bytes: Uint8Array, what: string): Promise<void> => {
  const res = await getBlob(on, on.did, blobCid(bytes))
  if (res.status !== 200 || !sameBytes(res.bytes, bytes)) throw new Error(`${what}: getBlob gave ${show(res)}`)
  const stored = await countStored(on.persistDir, bytes)
  expect(stored.objects, `${what}: R2 objects holding the bytes`).toBe(1)
}

describe('listBlobs', () => {
  test('lists blobs referenced by records, not uploads no record references', async () => {
    const used = await uploadBlob(pds, token, makePng(), 'image/png')
    const unused = await uploadBlob(pds, token, makePng(), 'image/png')
    await createPost(pds, token, used)
    const cids = await allListed()
    expect(cids).toContain(used.ref.$link)
    expect(cids).not.toContain(unused.ref.$link)
  })

  test('a blob in two records is listed once; a deleted record’s only blob is no longer listed', async () => {
    const shared = await uploadBlob(pds, token, makePng(), 'image/png')
    const lone = await uploadBlob(pds, token, makePng(), 'image/png')
    await createPost(pds, token, shared)
    await createPost(pds, token, shared)
    const loneUri = await createPost(pds, token, lone)
    let cids = await allListed()
    expect(cids.filter((c) => c === shared.ref.$link).length).toBe(1)
    expect(cids).toContain(lone.ref.$link)
    await deleteRecord(pds, token, loneUri)
    cids = await allListed()
    expect(cids).not.toContain(lone.ref.$link)
    expect(cids).toContain(shared.ref.$link)
  })

  test('since = a rev: only blobs of records written after it', async () => {
    const before = await uploadBlob(pds, token, makePng(), 'image/png')
    await createPost(pds, token, before)
    const rev = await latestRev()
    const emptySince = expectStatus(await listBlobs({ since: rev }), 200)
    expect(emptySince.body.cids).toEqual([])
    const after = await uploadBlob(pds, token, makeJpeg(), 'image/jpeg')
    await createPost(pds, token, after)
    const res = expectStatus(await listBlobs({ since: rev }), 200)
    expect(res.body.cids).toEqual([after.ref.$link])
    // Rewriting an older record counts as written after `since` (reference: record.repoRev > since).
    const old = await uploadBlob(pds, token, makePng(), 'image/png')
    const oldUri = await createPost(pds, token, old)
    const rev2 = await latestRev()
    const [, , , collection, rkey] = oldUri.split('/')
    expectStatus(await xpost(pds, 'com.atproto.repo.putRecord', {
      repo: pds.did, collection, rkey, record: imagePost('edited', old),
    }, token), 200)
    expect(expectStatus(await listBlobs({ since: rev2 }), 200).body.cids).toEqual([old.ref.$link])
  })

  test('limit + cursor page through every blob exactly once', async () => {
    const mine: string[] = []
    for (let i = 0; i < 7; i++) {
      const ref = await uploadBlob(pds, token, makePng(), 'image/png')
      await createPost(pds, token, ref)
      mine.push(ref.ref.$link)
    }
    const full = await allListed()
    for (const c of mine) expect(full).toContain(c)
    expect(new Set(full).size).toBe(full.length)
    const seen: string[] = []
    let cursor: string | undefined
    let pages = 0
    for (; pages < 100; pages++) {
      const res = expectStatus(await listBlobs({ limit: 2, cursor }), 200)
      expect(res.body.cids.length).toBeLessThanOrEqual(2)
      seen.push(...res.body.cids)
      cursor = res.body.cursor
      if (!cursor || res.body.cids.length === 0) break
    }
    expect(pages).toBeLessThan(100)
    expect(seen.length).toBe(full.length)
    expect(new Set(seen)).toEqual(new Set(full))
  })

  test('an unknown DID is 400 RepoNotFound', async () => {
    const res = await xget(pds, 'com.atproto.sync.listBlobs', { did: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa' })
    expectXrpcError(res, 400, 'RepoNotFound')
  })
})

describe('listMissingBlobs', () => {
  test('a healthy repo has none', async () => {
    await createPost(pds, token, await uploadBlob(pds, token, makePng(), 'image/png'))
    const res = expectStatus(await xget(pds, 'com.atproto.repo.listMissingBlobs', {}, token), 200)
    expect(res.body.blobs).toEqual([])
    expect(res.body.cursor).toBeUndefined()
  })

  test('needs a token', async () => {
    const res = await xget(pds, 'com.atproto.repo.listMissingBlobs', {})
    expect(res.status, show(res)).toBe(401)
  })
})

describe('garbage collection (cron)', () => {
  test('a blob whose only record is deleted goes; one another record still uses stays; a fresh upload stays', async () => {
    const orphan = makePng()
    const shared = makePng()
    const fresh = makeRandomBinary(7_777)
    const orphanRef = await uploadBlob(pds, token, orphan, 'image/png')
    const sharedRef = await uploadBlob(pds, token, shared, 'image/png')
    const freshRef = await uploadBlob(pds, token, fresh)
    const a = await createPost(pds, token, orphanRef)
    const b = await createPost(pds, token, sharedRef)
    await createPost(pds, token, sharedRef)
    await deleteRecord(pds, token, a)
    await deleteRecord(pds, token, b)

    await expectCollected(pds, orphan, 'the dereferenced blob is still there')
    await expectServed(pds, shared, 'blob still referenced by another post')
    expect(await allListed()).toContain(sharedRef.ref.$link)
    // The unreferenced upload is younger than the default temp TTL: still usable.
    await createFile(pds, token, freshRef)
    await expectServed(pds, fresh, 'upload referenced after the cron runs')
  })

  test('a blob moved from a deleted post to a new one in one applyWrites survives', async () => {
    const bytes = makePng()
    const ref = await uploadBlob(pds, token, bytes, 'image/png')
    const first = await createPost(pds, token, ref)
    const witness = makeJpeg()
    const witnessUri = await createPost(pds, token, await uploadBlob(pds, token, witness, 'image/jpeg'))
    await deleteRecord(pds, token, witnessUri)
    const res = await xpost(pds, 'com.atproto.repo.applyWrites', {
      repo: pds.did,
      writes: [
        { $type: 'com.atproto.repo.applyWrites#delete', collection: 'app.bsky.feed.post', rkey: rkeyOf(first) },
        { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', value: imagePost('moved', ref) },
      ],
    }, token)
    expectStatus(res, 200)
    await expectCollected(pds, witness, 'the witness blob (deleted post) was not collected')
    await expectServed(pds, bytes, 'blob moved to the new post')
  })

  test('bytes collected by the GC can be uploaded and used again', async () => {
    const bytes = makePng()
    const uri = await createPost(pds, token, await uploadBlob(pds, token, bytes, 'image/png'))
    await deleteRecord(pds, token, uri)
    await expectCollected(pds, bytes, 'not collected')
    const again = await uploadBlob(pds, token, bytes, 'image/png')
    expect(again.ref.$link).toBe(blobCid(bytes))
    await createPost(pds, token, again)
    await triggerCron(pds)
    await expectServed(pds, bytes, 're-uploaded after GC')
  })

  test('replacing a profile avatar frees the old image', async () => {
    const first = makeJpeg()
    const second = makePng()
    const put = async (avatar: BlobRefJson) =>
      expectStatus(
        await xpost(pds, 'com.atproto.repo.putRecord', {
          repo: pds.did,
          collection: 'app.bsky.actor.profile',
          rkey: 'self',
          record: { $type: 'app.bsky.actor.profile', displayName: 'GC Alice', avatar },
        }, token),
        200,
      )
    await put(await uploadBlob(pds, token, first, 'image/jpeg'))
    await put(await uploadBlob(pds, token, second, 'image/png'))
    await expectCollected(pds, first, 'the replaced avatar is still there')
    await expectServed(pds, second, 'the current avatar')
  })
})

describe('durability', () => {
  test('blobs (5 MB included) and a pending upload survive restart()', async () => {
    const big = makeRandomBinary(5_000_000)
    const png = makePng(24, 24)
    const pending = makeJpeg()
    const bigRef = await uploadBlob(pds, token, big)
    const pngRef = await uploadBlob(pds, token, png, 'image/png')
    const pendingRef = await uploadBlob(pds, token, pending, 'image/jpeg')
    await createFile(pds, token, bigRef)
    await createPost(pds, token, pngRef)
    const listedBefore = await allListed()

    await pds.restart()

    const jwt = (await createSession(pds, pds.handle, pds.password)).accessJwt
    await expectServed(pds, big, '5 MB blob after restart')
    await expectServed(pds, png, 'png after restart')
    expect(await allListed()).toEqual(listedBefore)
    // The upload no record used yet is still known: a record may reference it now.
    await createPost(pds, jwt, pendingRef)
    await expectServed(pds, pending, 'the pending upload, referenced after restart')
  }, 120_000)
})

describe('temporary uploads expire (PDS_BLOB_TEMP_TTL_SECONDS=2)', () => {
  let tmp: PdsProcess
  let jwt: string
  const TTL_MS = 2_000

  beforeAll(async () => {
    tmp = await startPds({ vars: { PDS_BLOB_TEMP_TTL_SECONDS: String(TTL_MS / 1000) } })
    jwt = (await createSession(tmp, tmp.handle, tmp.password)).accessJwt
  }, 120_000)

  afterAll(async () => {
    await stopPds(tmp)
  })

  test('an upload never referenced is gone after the TTL + cron; a referenced one is not', async () => {
    const unused = makeRandomBinary(12_345)
    const used = makePng()
    const unusedRef = await uploadBlob(tmp, jwt, unused)
    const usedRef = await uploadBlob(tmp, jwt, used, 'image/png')
    await createPost(tmp, jwt, usedRef)
    expect((await countStored(tmp.persistDir, unused)).objects).toBe(1)
    await sleep(TTL_MS + 1_500)

    await expectCollected(tmp, unused, 'the expired upload is still there')
    await expectServed(tmp, used, 'referenced blob older than the TTL')
    // Its metadata went too: a record can no longer reference it.
    const late = await xpost(tmp, 'com.atproto.repo.createRecord', {
      repo: tmp.did,
      collection: 'com.example.e2e.file',
      record: { $type: 'com.example.e2e.file', file: unusedRef },
    }, jwt)
    expectXrpcError(late, 400, 'BlobNotFound')
  }, 60_000)

  test('an upload younger than the TTL survives the cron', async () => {
    // Retried if this machine is too slow to upload and run the cron inside the TTL.
    for (let attempt = 1; ; attempt++) {
      const bytes = makePng()
      const started = Date.now()
      const ref = await uploadBlob(tmp, jwt, bytes, 'image/png')
      await triggerCron(tmp)
      const elapsed = Date.now() - started
      if (elapsed > TTL_MS * 0.75) {
        if (attempt < 3) continue
        throw new Error(`upload + cron took ${elapsed} ms, too slow to test a ${TTL_MS} ms TTL`)
      }
      const uri = await createPost(tmp, jwt, ref)
      expect(rkeyOf(uri)).not.toBe('')
      await expectServed(tmp, bytes, 'upload referenced right after a cron run')
      return
    }
  })
})
