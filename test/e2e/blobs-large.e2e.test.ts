/**
 * Blobs, part 3: large and unusual uploadBlob bodies. A 100 MB upload (the
 * default PDS_BLOB_UPLOAD_LIMIT is 100 MiB) gets the CID and size of its
 * bytes and reads back byte for byte; a body cut off halfway leaves nothing
 * stored; bodies without Content-Length are buffered up to 8 MiB and refused
 * (411) beyond. Memory and speed are the bench's (bench/run.ts, phase 7), not
 * asserted here.
 */
import { expect, test } from 'bun:test'
import { connect } from 'node:net'
import { blobCid, countStored, describeR2, getBlob, makeRandomBinary, pollUntil, readR2State, sha256Hex, uploadBlob, uploadBlobRaw } from './helpers/blobs'
import type { PdsProcess } from './harness'
import { usePds } from './use-pds'
import { expectStatus, expectXrpcError, request, xpost } from './xrpc-client'

let pds: PdsProcess
let token: string

usePds((started, accessJwt) => {
  pds = started
  token = accessJwt
})

/** A body in 64 KiB pieces with no Content-Length (sent chunked). */
const chunked = (bytes: Uint8Array): ReadableStream<Uint8Array> => {
  let offset = 0
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= bytes.length) return controller.close()
      controller.enqueue(bytes.slice(offset, offset + 65_536))
      offset += 65_536
    },
  })
}

/** Live R2 objects, once their count is back to `baseline` (what a refused upload must leave). */
const expectObjectsBackTo = async (baseline: number): Promise<void> => {
  let seen = ''
  await pollUntil(
    async () => {
      const state = await readR2State(pds.persistDir)
      seen = describeR2(state)
      return state.objects.length === baseline
    },
    { timeoutMs: 5_000, describe: () => `want ${baseline} objects; R2: ${seen}` },
  )
}

test('100 MB: the CID and size of the bytes sent, and getBlob gives the same bytes back', async () => {
  const bytes = makeRandomBinary(100_000_000)
  const blob = await uploadBlob(pds, token, bytes, 'application/octet-stream')
  expect(blob).toEqual({ $type: 'blob', ref: { $link: blobCid(bytes) }, mimeType: 'application/octet-stream', size: bytes.length })
  // Served once a record references it (as the reference PDS).
  const record = { $type: 'com.example.e2e.file', file: blob }
  expectStatus(await xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, collection: 'com.example.e2e.file', record }, token), 200)
  const got = expectStatus(await getBlob(pds, pds.did, blob.ref.$link), 200)
  expect(got.headers.get('content-length')).toBe(String(bytes.length))
  expect(got.bytes.length).toBe(bytes.length)
  expect(sha256Hex(got.bytes)).toBe(sha256Hex(bytes))
}, 30_000)

test('a body cut off halfway (the client goes away) leaves no object behind, and uploads still work', async () => {
  const baseline = (await readR2State(pds.persistDir)).objects.length
  const url = new URL(pds.url)
  const socket = connect(Number(url.port), url.hostname)
  await new Promise<void>((ok, fail) => socket.once('connect', ok).once('error', fail))
  socket.write(
    'POST /xrpc/com.atproto.repo.uploadBlob HTTP/1.1\r\n' +
      `Host: ${url.host}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\n` +
      'Content-Length: 20000000\r\n\r\n',
  )
  await new Promise<void>((ok) => socket.write(makeRandomBinary(5_000_000), () => ok()))
  socket.destroy()
  await expectObjectsBackTo(baseline)
  const after = makeRandomBinary(3_000_000)
  expect((await uploadBlob(pds, token, after)).ref.$link).toBe(blobCid(after))
}, 30_000)

test('without Content-Length: accepted up to 8 MiB with the right CID and size', async () => {
  const bytes = makeRandomBinary(3_000_000)
  const res = expectStatus(await uploadBlobRaw(pds, chunked(bytes), 'application/octet-stream', token), 200)
  expect(res.body.blob).toEqual({ $type: 'blob', ref: { $link: blobCid(bytes) }, mimeType: 'application/octet-stream', size: bytes.length })
})

test('without Content-Length, over 8 MiB → 411 LengthRequired, nothing stored', async () => {
  const baseline = (await readR2State(pds.persistDir)).objects.length
  const bytes = makeRandomBinary(9 * 1024 * 1024)
  expectXrpcError(await uploadBlobRaw(pds, chunked(bytes), 'application/octet-stream', token), 411, 'LengthRequired')
  await expectObjectsBackTo(baseline)
  expect((await countStored(pds.persistDir, bytes)).objects).toBe(0)
})

test('an empty body without Content-Length → 400 InvalidRequest, nothing stored', async () => {
  const baseline = (await readR2State(pds.persistDir)).objects.length
  const res = await request(pds, '/xrpc/com.atproto.repo.uploadBlob', {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
    body: chunked(new Uint8Array(0)),
    duplex: 'half',
  } as RequestInit)
  expectXrpcError(res, 400, 'InvalidRequest')
  await expectObjectsBackTo(baseline)
})
