/**
 * Blobs, part 1: com.atproto.repo.uploadBlob (CID, MIME sniffing, size limit,
 * auth, one stored object per content), com.atproto.sync.getBlob (bytes,
 * headers, ranges, errors) and the checks a record write makes on the blobs
 * it references. Expected answers follow the reference PDS
 * (api/com/atproto/repo/uploadBlob.ts, sync/getBlob.ts,
 * actor-store/blob/transactor.ts). Listing, garbage collection and restarts
 * are in blobs-lifecycle.e2e.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import {
  type BlobRefJson,
  blobCid,
  countStored,
  describeR2,
  expectBlobNotFound,
  getBlob,
  imagePost,
  makeGif,
  makeJpeg,
  makeMp4,
  makePng,
  makeRandomBinary,
  makeWebp,
  pollUntil,
  readR2State,
  uploadBlob,
  uploadBlobRaw,
} from './helpers/blobs'
import { type PdsProcess, startPds, stopPds } from './harness'
import { usePds } from './use-pds'
import { createSession, expectStatus, expectXrpcError, rkeyOf, show, xget, xpost } from './xrpc-client'

let pds: PdsProcess
let token: string
/** The multi-megabyte random binary, uploaded once (under the reference's 5 MiB default limit). */
const big = makeRandomBinary(5_000_000)
let bigRef: BlobRefJson

usePds((started, accessJwt) => {
  pds = started
  token = accessJwt
})

const createRecord = (collection: string, record: Record<string, unknown>, rkey?: string) =>
  xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, collection, rkey, record }, token)
const latestRev = async (): Promise<string> =>
  expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body.rev

describe('uploadBlob', () => {
  test('answers {blob} with the independently computed CID, the size and the MIME type', async () => {
    const bytes = new TextEncoder().encode(`plain text blob ${Math.random()}`)
    const res = expectStatus(await uploadBlobRaw(pds, bytes, 'text/plain', token), 200)
    expect(res.body).toEqual({
      blob: { $type: 'blob', ref: { $link: blobCid(bytes) }, mimeType: 'text/plain', size: bytes.length },
    })
    expect(res.body.blob.ref.$link).toStartWith('bafkrei') // CIDv1, raw, sha256, base32
  })

  test('a 5 MB random binary: CID computed over all of it, application/octet-stream', async () => {
    bigRef = await uploadBlob(pds, token, big, 'application/octet-stream')
    expect(bigRef).toEqual({
      $type: 'blob',
      ref: { $link: blobCid(big) },
      mimeType: 'application/octet-stream',
      size: big.length,
    })
  })

  test('the MIME type is sniffed from the bytes, whatever the header says', async () => {
    const cases: [string, Uint8Array, string][] = [
      ['image/png', makePng(), 'application/octet-stream'],
      ['image/jpeg', makeJpeg(), 'application/octet-stream'],
      ['image/gif', makeGif(), 'application/octet-stream'],
      ['image/webp', makeWebp(), 'application/octet-stream'],
      ['video/mp4', makeMp4(), 'application/octet-stream'],
      // A wrong but plausible header loses to the bytes too.
      ['image/png', makePng(), 'image/jpeg'],
    ]
    const wrong: string[] = []
    for (const [expected, bytes, header] of cases) {
      const res = await uploadBlobRaw(pds, bytes, header, token)
      if (res.status !== 200 || res.body?.blob?.mimeType !== expected || res.body.blob.ref.$link !== blobCid(bytes)) {
        wrong.push(`${expected} bytes sent as ${header}: ${show(res)}`)
      }
    }
    expect(wrong).toEqual([])
  })

  test('bytes nothing recognises keep the Content-Type header', async () => {
    const bytes = makeRandomBinary(300)
    const blob = await uploadBlob(pds, token, bytes, 'application/x-e2e-custom')
    expect(blob.mimeType).toBe('application/x-e2e-custom')
    // Referenced first: the reference PDS serves only blobs a record made permanent.
    expectStatus(await createRecord('com.example.e2e.file', { $type: 'com.example.e2e.file', file: blob }), 200)
    const got = expectStatus(await getBlob(pds, pds.did, blob.ref.$link), 200)
    expect(got.headers.get('content-type')?.split(';')[0]).toBe('application/x-e2e-custom')
  })

  test('no Content-Type, or one that is no MIME type → 400 InvalidRequest (reference), nothing stored', async () => {
    // xrpc-server's parseReqEncoding: "Request encoding (Content-Type) required but not provided".
    const wrong: string[] = []
    for (const header of [undefined, 'foo']) {
      const bytes = makeRandomBinary(999)
      const res = await uploadBlobRaw(pds, bytes, header, token)
      const stored = (await countStored(pds.persistDir, bytes)).objects
      if (res.status !== 400 || res.body?.error !== 'InvalidRequest' || stored !== 0) {
        wrong.push(`Content-Type ${header ?? '(none)'} → ${show(res)}; ${stored} object(s) stored`)
      }
    }
    expect(wrong).toEqual([])
  })

  test('without a token: 401 AuthMissing; a forged token: 400 InvalidToken (as the reference); nothing stored', async () => {
    const bytes = makeRandomBinary(4321)
    expectXrpcError(await uploadBlobRaw(pds, bytes, 'application/octet-stream'), 401, 'AuthMissing')
    const bad = await uploadBlobRaw(pds, bytes, 'application/octet-stream', `${token}x`)
    expectXrpcError(bad, 400, 'InvalidToken')
    const stored = await countStored(pds.persistDir, bytes)
    expect({ objects: stored.objects, files: stored.files }).toEqual({ objects: 0, files: 0 })
  })

  test('the same bytes uploaded twice: same CID, ONE stored object, even once referenced', async () => {
    const bytes = makePng(16, 16)
    const a = await uploadBlob(pds, token, bytes, 'image/png')
    const b = await uploadBlob(pds, token, bytes, 'image/png')
    expect(b).toEqual(a)
    const once = async (): Promise<boolean> => {
      const n = await countStored(pds.persistDir, bytes)
      return n.objects === 1 && n.files === 1
    }
    const what = async () => describeR2((await readR2State(pds.persistDir)))
    let seen = ''
    const onceSeen = async (): Promise<boolean> => {
      seen = await what()
      return once()
    }
    await pollUntil(onceSeen, { timeoutMs: 5_000, describe: () => `want 1 object + 1 file with these bytes; R2: ${seen}` })
    // Making it permanent (referencing it) must not leave a second copy behind.
    expectStatus(await createRecord('app.bsky.feed.post', imagePost('dedupe', a)), 200)
    const again = await uploadBlob(pds, token, bytes, 'image/png')
    expect(again).toEqual(a)
    await pollUntil(onceSeen, {
      timeoutMs: 5_000,
      describe: () => `after referencing + a third upload, want 1 object + 1 file with these bytes; R2: ${seen}`,
    })
  })

  test('five concurrent uploads of the same bytes: one CID, ONE stored object', async () => {
    const bytes = makeRandomBinary(200_000)
    const refs = await Promise.all(Array.from({ length: 5 }, () => uploadBlob(pds, token, bytes)))
    expect(new Set(refs.map((r) => r.ref.$link))).toEqual(new Set([blobCid(bytes)]))
    let seen = ''
    await pollUntil(
      async () => {
        const n = await countStored(pds.persistDir, bytes)
        seen = `${n.objects} objects, ${n.files} files`
        return n.objects === 1 && n.files === 1
      },
      { timeoutMs: 5_000, describe: () => `want 1 object + 1 file holding the bytes, got ${seen}` },
    )
  })
})

describe('getBlob', () => {
  let png: Uint8Array
  let pngRef: BlobRefJson

  beforeAll(async () => {
    png = makePng(32, 32)
    pngRef = await uploadBlob(pds, token, png, 'image/png')
    expectStatus(await createRecord('app.bsky.feed.post', imagePost('getBlob', pngRef)), 200)
    // Referenced first: the reference PDS serves only blobs a record made permanent.
    if (!bigRef) bigRef = await uploadBlob(pds, token, big)
    expectStatus(await createRecord('com.example.e2e.file', { $type: 'com.example.e2e.file', file: bigRef }), 200)
  }, 60_000)

  test('returns the exact bytes with the stored type, length and safety headers', async () => {
    const res = expectStatus(await getBlob(pds, pds.did, pngRef.ref.$link), 200)
    expect(Buffer.from(res.bytes).equals(Buffer.from(png))).toBe(true)
    expect(res.headers.get('content-type')).toBe('image/png')
    expect(res.headers.get('content-length')).toBe(String(png.length))
    expect(res.headers.get('content-security-policy')).toBe(`default-src 'none'; sandbox`)
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    expect(res.headers.get('cache-control') ?? '').not.toBe('')
  })

  test('the 5 MB blob comes back whole', async () => {
    const res = expectStatus(await getBlob(pds, pds.did, bigRef.ref.$link), 200)
    expect(res.bytes.length).toBe(big.length)
    expect(blobCid(res.bytes)).toBe(bigRef.ref.$link)
    expect(res.headers.get('content-type')).toBe('application/octet-stream')
    expect(res.headers.get('content-length')).toBe(String(big.length))
  })

  test('Range: bytes=10-19 → 206 with Content-Range and exactly those bytes', async () => {
    const res = await getBlob(pds, pds.did, pngRef.ref.$link, { range: 'bytes=10-19' })
    expect(res.status, show(res)).toBe(206)
    expect(res.headers.get('content-range')).toBe(`bytes 10-19/${png.length}`)
    expect(Buffer.from(res.bytes).equals(Buffer.from(png.subarray(10, 20)))).toBe(true)
    expect(res.headers.get('content-length')).toBe('10')
    expect(res.headers.get('content-type')).toBe('image/png')
  })

  test('a range deep inside the 5 MB blob', async () => {
    const res = await getBlob(pds, pds.did, bigRef.ref.$link, { range: 'bytes=4000000-4000099' })
    expect(res.status, show(res)).toBe(206)
    expect(res.headers.get('content-range')).toBe(`bytes 4000000-4000099/${big.length}`)
    expect(Buffer.from(res.bytes).equals(Buffer.from(big.subarray(4_000_000, 4_000_100)))).toBe(true)
  })

  test('open-ended, suffix and past-the-end ranges → 206 with the right slice', async () => {
    const n = png.length
    const cases: [string, number, number][] = [[`bytes=10-`, 10, n - 1], [`bytes=-5`, n - 5, n - 1], [`bytes=10-${n + 1000}`, 10, n - 1]]
    const wrong: string[] = []
    for (const [range, first, last] of cases) {
      const res = await getBlob(pds, pds.did, pngRef.ref.$link, { range })
      const ok = res.status === 206 && res.headers.get('content-range') === `bytes ${first}-${last}/${n}` &&
        Buffer.from(res.bytes).equals(Buffer.from(png.subarray(first, last + 1)))
      if (!ok) wrong.push(`Range: ${range} → ${res.status} content-range=${res.headers.get('content-range')} ${res.bytes.length} bytes`)
    }
    expect(wrong).toEqual([])
  })

  test('an unsatisfiable range → 416 with Content-Range: bytes */size (RFC 9110 §15.5.17)', async () => {
    const res = await getBlob(pds, pds.did, pngRef.ref.$link, { range: `bytes=${png.length + 10}-${png.length + 20}` })
    const got = `${res.status}, Content-Range: ${res.headers.get('content-range')}`
    expect(got).toBe(`416, Content-Range: bytes */${png.length}`)
  })

  test('a Range header that is malformed or in another unit is ignored: 200, whole body (RFC 9110 §14.2)', async () => {
    const wrong: string[] = []
    for (const range of ['items=0-5', 'bytes=abc', 'bytes=19-10']) {
      const res = await getBlob(pds, pds.did, pngRef.ref.$link, { range })
      if (res.status !== 200 || res.headers.has('content-range') || !Buffer.from(res.bytes).equals(Buffer.from(png))) {
        wrong.push(`Range: ${range} → ${res.status} content-range=${res.headers.get('content-range')} ${res.bytes.length} bytes`)
      }
    }
    expect(wrong).toEqual([])
  })

  test('an unknown CID is 400 BlobNotFound', async () => {
    const cid = blobCid(makeRandomBinary(64))
    expectBlobNotFound(await getBlob(pds, pds.did, cid), `getBlob ${cid}`)
  })

  test('an unknown DID is 400 RepoNotFound', async () => {
    const other = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
    expectXrpcError(await getBlob(pds, other, pngRef.ref.$link), 400, 'RepoNotFound')
  })

  test('a malformed CID is 400, missing params are 400', async () => {
    const bad = await getBlob(pds, pds.did, 'not-a-cid')
    expect(bad.status, show(bad)).toBe(400)
    const missing = await xget(pds, 'com.atproto.sync.getBlob', { did: pds.did })
    expectXrpcError(missing, 400, 'InvalidRequest')
  })
})

describe('records referencing blobs', () => {
  const postCount = async (): Promise<number> => {
    const res = await xget(pds, 'com.atproto.repo.listRecords', {
      repo: pds.did,
      collection: 'app.bsky.feed.post',
      limit: 100,
    })
    return expectStatus(res, 200).body.records.length
  }

  test('a post with an unknown blob CID → 400 BlobNotFound, nothing committed', async () => {
    const bytes = makePng()
    const ghost: BlobRefJson = { $type: 'blob', ref: { $link: blobCid(bytes) }, mimeType: 'image/png', size: bytes.length }
    const revBefore = await latestRev()
    const res = await createRecord('app.bsky.feed.post', imagePost('ghost', ghost))
    expectXrpcError(res, 400, 'BlobNotFound')
    expect(await latestRev()).toBe(revBefore)
  })

  test('validate: false does not skip the blob checks', async () => {
    const bytes = makePng()
    const ghost: BlobRefJson = { $type: 'blob', ref: { $link: blobCid(bytes) }, mimeType: 'image/png', size: bytes.length }
    const res = await xpost(pds, 'com.atproto.repo.createRecord', {
      repo: pds.did,
      collection: 'app.bsky.feed.post',
      validate: false,
      record: imagePost('unvalidated ghost', ghost),
    }, token)
    expectXrpcError(res, 400, 'BlobNotFound')
  })

  test('mimeType differing from the stored one → 400 InvalidMimeType', async () => {
    const bytes = makePng()
    const ref = await uploadBlob(pds, token, bytes, 'image/png')
    expect(ref.mimeType).toBe('image/png')
    const before = await postCount()
    const res = await createRecord('app.bsky.feed.post', imagePost('mime', { ...ref, mimeType: 'image/jpeg' }))
    expectXrpcError(res, 400, 'InvalidMimeType')
    expect(await postCount()).toBe(before)
  })

  test('size differing from the stored one → 400 InvalidSize', async () => {
    const bytes = makePng()
    const ref = await uploadBlob(pds, token, bytes, 'image/png')
    const res = await createRecord('app.bsky.feed.post', imagePost('size', { ...ref, size: ref.size + 1 }))
    expectXrpcError(res, 400, 'InvalidSize')
    const smaller = await createRecord('app.bsky.feed.post', imagePost('size', { ...ref, size: ref.size - 1 }))
    expectXrpcError(smaller, 400, 'InvalidSize')
  })

  test('a valid post with two images succeeds and reads back with the refs', async () => {
    const a = await uploadBlob(pds, token, makePng(), 'image/png')
    const b = await uploadBlob(pds, token, makeJpeg(), 'image/jpeg')
    const record = imagePost('two images', a, b)
    const res = expectStatus(await createRecord('app.bsky.feed.post', record), 200)
    const got = expectStatus(
      await xget(pds, 'com.atproto.repo.getRecord', {
        repo: pds.did,
        collection: 'app.bsky.feed.post',
        rkey: rkeyOf(res.body.uri),
      }),
      200,
    )
    expect(got.body.value).toEqual(record)
  })

  test('a profile avatar: bad refs refused, a valid one accepted (putRecord)', async () => {
    const bytes = makeJpeg()
    const ref = await uploadBlob(pds, token, bytes, 'image/jpeg')
    const put = (avatar: BlobRefJson) =>
      xpost(pds, 'com.atproto.repo.putRecord', {
        repo: pds.did,
        collection: 'app.bsky.actor.profile',
        rkey: 'self',
        record: { $type: 'app.bsky.actor.profile', displayName: 'Blob Alice', avatar },
      }, token)
    expectXrpcError(await put({ ...ref, ref: { $link: blobCid(makeJpeg()) } }), 400, 'BlobNotFound')
    expectXrpcError(await put({ ...ref, mimeType: 'image/png' }), 400, 'InvalidMimeType')
    expectXrpcError(await put({ ...ref, size: ref.size + 7 }), 400, 'InvalidSize')
    expectStatus(await put(ref), 200)
    const got = await xget(pds, 'com.atproto.repo.getRecord', {
      repo: pds.did,
      collection: 'app.bsky.actor.profile',
      rkey: 'self',
    })
    expect(expectStatus(got, 200).body.value.avatar).toEqual(ref)
  })

  test('applyWrites checks blobs too: one bad ref fails the whole batch', async () => {
    const good = await uploadBlob(pds, token, makePng(), 'image/png')
    const revBefore = await latestRev()
    const ghost: BlobRefJson = { ...good, ref: { $link: blobCid(makePng()) } }
    const res = await xpost(pds, 'com.atproto.repo.applyWrites', {
      repo: pds.did,
      writes: [
        { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', value: imagePost('ok', good) },
        { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', value: imagePost('bad', ghost) },
      ],
    }, token)
    expectXrpcError(res, 400, 'BlobNotFound')
    expect(await latestRev()).toBe(revBefore)
  })

  test('a record of an unknown lexicon may reference the 5 MB blob (checked like any other)', async () => {
    const res = await createRecord('com.example.e2e.file', { $type: 'com.example.e2e.file', file: bigRef })
    expectStatus(res, 200)
    const wrong = await createRecord('com.example.e2e.file', { $type: 'com.example.e2e.file', file: { ...bigRef, size: 1 } })
    expectXrpcError(wrong, 400, 'InvalidSize')
  })
})

describe('upload size limit (PDS_BLOB_UPLOAD_LIMIT=1000000)', () => {
  let small: PdsProcess
  let smallToken: string
  const LIMIT = 1_000_000

  beforeAll(async () => {
    small = await startPds({ vars: { PDS_BLOB_UPLOAD_LIMIT: String(LIMIT) } })
    smallToken = (await createSession(small, small.handle, small.password)).accessJwt
  }, 120_000)

  afterAll(async () => {
    await stopPds(small)
  })

  const expectNothingStored = async (bytes: Uint8Array, baseline: number): Promise<void> => {
    let last = ''
    await pollUntil(
      async () => {
        const n = await countStored(small.persistDir, bytes)
        last = describeR2(n.state)
        return n.objects === 0 && n.files === 0 && n.state.objects.length === baseline
      },
      { timeoutMs: 5_000, describe: () => `R2 still holds something of the refused upload: ${last}` },
    )
  }

  test('exactly the limit is accepted', async () => {
    const bytes = makeRandomBinary(LIMIT)
    const blob = await uploadBlob(small, smallToken, bytes)
    expect(blob.size).toBe(LIMIT)
    // Proves the R2 reader sees this PDS's objects, so "nothing stored" below means something.
    await pollUntil(async () => (await countStored(small.persistDir, bytes)).objects === 1, {
      timeoutMs: 5_000,
      describe: () => 'the accepted upload is not visible in the local R2 state',
    })
  })

  test('one byte over → 413 PayloadTooLarge, nothing stored', async () => {
    const baseline = (await readR2State(small.persistDir)).objects.length
    const bytes = makeRandomBinary(LIMIT + 1)
    const res = await uploadBlobRaw(small, bytes, 'application/octet-stream', smallToken)
    expectXrpcError(res, 413, 'PayloadTooLarge')
    await expectNothingStored(bytes, baseline)
  })

  test('5 MB → 413 PayloadTooLarge, nothing stored, and the CID stays unknown', async () => {
    const baseline = (await readR2State(small.persistDir)).objects.length
    const bytes = makeRandomBinary(5_000_000)
    const res = await uploadBlobRaw(small, bytes, 'application/octet-stream', smallToken)
    expectXrpcError(res, 413, 'PayloadTooLarge')
    await expectNothingStored(bytes, baseline)
    expectBlobNotFound(await getBlob(small, small.did, blobCid(bytes)), 'getBlob of the refused upload')
  })

  test('a chunked body (no Content-Length) over the limit → 413, nothing stored', async () => {
    const baseline = (await readR2State(small.persistDir)).objects.length
    const bytes = makeRandomBinary(2_000_000)
    const chunk = 64 * 1024
    let offset = 0
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= bytes.length) return controller.close()
        controller.enqueue(bytes.slice(offset, offset + chunk))
        offset += chunk
      },
    })
    const res = await uploadBlobRaw(small, stream, 'application/octet-stream', smallToken)
    expectXrpcError(res, 413, 'PayloadTooLarge')
    await expectNothingStored(bytes, baseline)
  })
})
