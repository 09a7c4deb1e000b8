/**
 * com.atproto.repo.uploadBlob timing: POSTs a large random binary as raw bytes
 * (application/octet-stream, Content-Length set), times request sent to JSON
 * response parsed, samples the server's RSS meanwhile, and checks the returned
 * blob ref is the CIDv1 (raw codec, sha256) of the bytes sent.
 */
import { randomBytes } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { sampleRss } from './proc'

export interface BlobUpload {
  ms: number
  bytes: number
  /** Throughput, MB/s (10^6 bytes per second). */
  mbPerS: number
  /** Peak RSS during the upload minus RSS just before it, KiB, per sampled process set. */
  rssPeakDeltaKib: Record<string, number>
  rssSamples: number
  /** The blob ref the server returned, and whether it is the expected CID and size. */
  cid: string
  cidOk: boolean
  sizeOk: boolean
  mimeType: string
}

/**
 * A reusable random payload: each upload overwrites its first 32 bytes with
 * fresh randomness, so no upload hits a server's "same bytes already stored"
 * path, without generating the whole buffer again.
 */
export class Payload {
  readonly bytes: Uint8Array
  constructor(size: number) {
    this.bytes = new Uint8Array(randomBytes(size))
  }

  /** Makes the bytes unique and returns their CID (raw codec, sha256). */
  async next(): Promise<string> {
    this.bytes.set(randomBytes(32), 0)
    return CID.create(1, raw.code, await sha256.digest(this.bytes)).toString()
  }
}

/**
 * Uploads `payload` (made unique first) to `url` with `accessJwt`, sampling
 * the RSS of each process set in `rssPids` every 10 ms.
 */
export const uploadBlob = async (url: string, accessJwt: string, payload: Payload, rssPids: Record<string, number[]>): Promise<BlobUpload> => {
  const expected = await payload.next()
  const body = payload.bytes
  const samplers = Object.entries(rssPids).map(([name, pids]) => [name, sampleRss(pids, 10)] as const)
  const t0 = performance.now()
  let json: { blob?: { ref?: { $link?: string }; size?: number; mimeType?: string } }
  let rss: Record<string, number> = {}
  let samples = 0
  try {
    const res = await fetch(`${url}/xrpc/com.atproto.repo.uploadBlob`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${accessJwt}`,
        'content-type': 'application/octet-stream',
        'content-length': String(body.byteLength),
      },
      body,
    })
    const text = await res.text()
    if (res.status !== 200) throw new Error(`uploadBlob: HTTP ${res.status} ${text.slice(0, 500)}`)
    json = JSON.parse(text)
  } finally {
    for (const [name, sampler] of samplers) {
      const r = sampler.stop()
      rss[name] = r.peakKib - r.baselineKib
      samples = Math.max(samples, r.samples)
    }
  }
  const ms = performance.now() - t0
  const cid = json.blob?.ref?.$link ?? ''
  return {
    ms,
    bytes: body.byteLength,
    mbPerS: body.byteLength / 1e6 / (ms / 1000),
    rssPeakDeltaKib: rss,
    rssSamples: samples,
    cid,
    cidOk: cid === expected,
    sizeOk: json.blob?.size === body.byteLength,
    mimeType: json.blob?.mimeType ?? '',
  }
}
