/**
 * com.atproto.repo.uploadBlob timing (phase 7): POSTs a large random binary
 * as raw bytes (application/octet-stream, Content-Length set), times request
 * sent to JSON response parsed, samples the server's RSS meanwhile, and checks
 * the returned blob ref is the CIDv1 (raw codec, sha256) of the bytes sent.
 * Two sizes, so a peak RSS that grows with the upload shows; and the blob
 * probe (bench/blob-probe.ts) times our upload code without R2 and the local
 * R2 alone, so the table says which part of the time is wrangler's R2.
 */
import { randomBytes } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { startProbe } from './blob-probe'
import { cpuMs, sampleRss } from './proc'
import type { Report } from './report'
import { interleave, type Pair, sleep } from './rounds'
import { REFERENCE_BLOB_UPLOAD_LIMIT, type Server, type ServerName } from './servers'
import { fmt, median } from './stats'

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

/** POSTs `payload` (made unique first) to `endpoint`, sampling the RSS of each process set in `rssPids` every 10 ms. */
const postBlob = async (endpoint: string, headers: Record<string, string>, payload: Payload, rssPids: Record<string, number[]>): Promise<BlobUpload> => {
  const expected = await payload.next()
  const body = payload.bytes
  const samplers = Object.entries(rssPids).map(([name, pids]) => [name, sampleRss(pids, 10)] as const)
  const t0 = performance.now()
  let json: { blob?: { ref?: { $link?: string }; size?: number; mimeType?: string }; cid?: string; size?: number }
  const rss: Record<string, number> = {}
  let samples = 0
  try {
    const res = await fetch(endpoint, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/octet-stream', 'content-length': String(body.byteLength) },
      body,
    })
    const text = await res.text()
    if (res.status !== 200) throw new Error(`POST ${endpoint}: HTTP ${res.status} ${text.slice(0, 500)}`)
    json = JSON.parse(text)
  } finally {
    for (const [name, sampler] of samplers) {
      const r = sampler.stop()
      rss[name] = r.peakKib - r.baselineKib
      samples = Math.max(samples, r.samples)
    }
  }
  const ms = performance.now() - t0
  const cid = json.blob?.ref?.$link ?? json.cid ?? ''
  return {
    ms,
    bytes: body.byteLength,
    mbPerS: body.byteLength / 1e6 / (ms / 1000),
    rssPeakDeltaKib: rss,
    rssSamples: samples,
    cid,
    cidOk: cid === expected,
    sizeOk: (json.blob?.size ?? json.size) === body.byteLength,
    mimeType: json.blob?.mimeType ?? '',
  }
}

/** uploadBlob of `payload` to `url` with `accessJwt`. */
export const uploadBlob = (url: string, accessJwt: string, payload: Payload, rssPids: Record<string, number[]>): Promise<BlobUpload> =>
  postBlob(`${url}/xrpc/com.atproto.repo.uploadBlob`, { authorization: `Bearer ${accessJwt}` }, payload, rssPids)

export interface BlobPhaseConfig {
  /** Upload sizes, MB (10^6 bytes), smallest first. */
  sizesMB: number[]
  rounds: number
}

const MIB = 1024

/** Phase 7 on `pair`: every size `rounds` times on both servers, then the probe's two halves. */
export const blobPhase = async (
  report: Report,
  pair: Pair<Server>,
  tokens: Pair<string>,
  cfg: BlobPhaseConfig,
  progress: (msg: string) => void,
): Promise<void> => {
  // Ours is charged the user-worker workerd's RSS (the figure that matters on Cloudflare); all workerd in the notes.
  const rssSets = (s: Server): Record<string, number[]> =>
    s.name === 'ours' ? { main: s.breakdown()['workerd (worker)'], all: s.pids() } : { main: s.pids(), all: s.pids() }
  const refRate: Record<number, number> = {}
  const peaks: Record<number, { ours: number; ref: number }> = {}
  const ourRate: Record<number, number> = {}
  let bad = { ours: 0, ref: 0 }
  // One unmeasured upload each first: a fresh process's first large body grows its heap once, whatever the size.
  const warmUp = new Payload(Math.min(...cfg.sizesMB) * 1e6)
  for (const name of ['ours', 'ref'] as const) await uploadBlob(pair[name].url, tokens[name], warmUp, {})
  for (const mb of cfg.sizesMB) {
    progress(`phase 7: uploadBlob ${cfg.rounds} x ${mb} MB on both`)
    const payload = new Payload(mb * 1e6)
    const uploads = await interleave(pair, cfg.rounds, (s) => uploadBlob(s.url, tokens[s.name], payload, rssSets(s)))
    const up = (name: ServerName, f: (u: BlobUpload) => number) => median(uploads[name].map((r) => f(r.result)))
    const each = (name: ServerName, f: (u: BlobUpload) => number) => uploads[name].map((r) => fmt(f(r.result))).join(', ')
    const peak = (name: ServerName) => up(name, (u) => u.rssPeakDeltaKib.main / MIB)
    refRate[mb] = up('ref', (u) => u.mbPerS)
    ourRate[mb] = up('ours', (u) => u.mbPerS)
    peaks[mb] = { ours: peak('ours'), ref: peak('ref') }
    report.add(`uploadBlob ${mb} MB throughput, median`, 'MB/s', ourRate[mb], refRate[mb], 'higher')
    report.add(`uploadBlob ${mb} MB server peak RSS increase, median`, 'MiB', peaks[mb].ours, peaks[mb].ref, 'lower')
    report.add(`uploadBlob ${mb} MB server CPU, median`, 'ms', median(uploads.ours.map((r) => r.cpu)), median(uploads.ref.map((r) => r.cpu)), 'lower')
    const wrong = (name: ServerName) => uploads[name].filter((r) => !r.result.cidOk || !r.result.sizeOk)
    bad = { ours: bad.ours + wrong('ours').length, ref: bad.ref + wrong('ref').length }
    for (const name of ['ours', 'ref'] as const) {
      if (wrong(name).length === 0) continue
      report.note(`WARNING: ${name === 'ours' ? 'ours' : 'the reference'} returned a blob ref for ${mb} MB that is not the raw sha256 CID or size of the bytes sent: ${wrong(name).map((r) => `${r.result.cid} (${r.result.cidOk ? 'cid ok' : 'cid WRONG'}, ${r.result.sizeOk ? 'size ok' : 'size WRONG'})`).join('; ')}.`)
    }
    report.note(
      `uploadBlob ${mb} MB: times (ms), ours: ${each('ours', (u) => u.ms)}; reference: ${each('ref', (u) => u.ms)}. ` +
        `Peak RSS increase (MiB, sampled every 10 ms), ours user-worker workerd: ${each('ours', (u) => u.rssPeakDeltaKib.main / MIB)} ` +
        `(all workerd incl. the entry proxy: ${each('ours', (u) => u.rssPeakDeltaKib.all / MIB)}); reference: ${each('ref', (u) => u.rssPeakDeltaKib.main / MIB)}. ` +
        `Server CPU by process (ms, median), ours: ${Object.keys(uploads.ours[0].groups).map((g) => `${g} ${fmt(median(uploads.ours.map((r) => r.groups[g])))}`).join(', ')}. ` +
        `Returned mimeType, ours: ${uploads.ours[0]?.result.mimeType}; reference: ${uploads.ref[0]?.result.mimeType}.`,
    )
  }
  report.add('uploadBlob wrong CID or size (sanity)', 'uploads', bad.ours, bad.ref, 'no-ratio')

  progress('phase 7: the blob probe (our upload code without R2; the local R2 alone)')
  const probe = await startProbe()
  try {
    const big = Math.max(...cfg.sizesMB)
    const probeRuns: Record<string, { ms: number[]; rate: number[]; rss: number[]; cpu: number[]; wrong: number }> = {}
    for (const path of ['/hash', '/r2']) await postBlob(`${probe.url}${path}`, {}, warmUp, {})
    for (const mb of cfg.sizesMB) {
      const payload = new Payload(mb * 1e6)
      for (let round = 0; round < cfg.rounds; round++) {
        for (const path of round % 2 === 0 ? ['/hash', '/r2'] : ['/r2', '/hash']) {
          const runs = (probeRuns[`${path} ${mb}`] ??= { ms: [], rate: [], rss: [], cpu: [], wrong: 0 })
          const cpu0 = cpuMs(probe.pids())
          const r = await postBlob(`${probe.url}${path}`, {}, payload, { main: probe.workerPids() })
          await sleep(300)
          runs.cpu.push(cpuMs(probe.pids()) - cpu0)
          runs.ms.push(r.ms)
          runs.rate.push(r.mbPerS)
          runs.rss.push(r.rssPeakDeltaKib.main / MIB)
          if (!r.sizeOk || (path === '/hash' && !r.cidOk)) runs.wrong++
        }
      }
    }
    const pick = (path: string, mb: number) => probeRuns[`${path} ${mb}`]
    report.add(`uploadBlob ${big} MB, our upload code with R2 replaced by a sink (probe), median`, 'MB/s', median(pick('/hash', big).rate), refRate[big], 'higher')
    report.add(`uploadBlob ${big} MB, wrangler's local R2 put alone (probe), median`, 'MB/s', median(pick('/r2', big).rate), refRate[big], 'higher')
    for (const mb of cfg.sizesMB) {
      report.add(`uploadBlob ${mb} MB peak RSS increase, our upload code without R2 (probe), median`, 'MiB', median(pick('/hash', mb).rss), Number.NaN)
      report.add(`uploadBlob ${mb} MB peak RSS increase, local R2 put alone (probe), median`, 'MiB', median(pick('/r2', mb).rss), Number.NaN)
    }
    const wrongProbe = cfg.sizesMB.reduce((n, mb) => n + pick('/hash', mb).wrong + pick('/r2', mb).wrong, 0)
    const r2Rate = median(pick('/r2', big).rate)
    report.note(
      `Blob probe (bench/blob-probe/worker.ts, its own wrangler dev): /hash runs the Worker's upload code (src/blobs/store.ts uploadToR2: read a MiB at a time, DigestStream, sniff) into a bucket that drops the bytes; ` +
        `/r2 pipes the body natively into the local R2 put (no hashing, no JS per chunk). For those two rows the "reference" column is the reference PDS's uploadBlob of the same size, for scale. ` +
        cfg.sizesMB
          .map(
            (mb) =>
              `${mb} MB, /hash: ${pick('/hash', mb).ms.map((v) => fmt(v)).join(', ')} ms, CPU ${fmt(median(pick('/hash', mb).cpu))} ms, peak RSS increase ${pick('/hash', mb).rss.map((v) => fmt(v)).join(', ')} MiB; ` +
              `/r2: ${pick('/r2', mb).ms.map((v) => fmt(v)).join(', ')} ms, CPU ${fmt(median(pick('/r2', mb).cpu))} ms, peak RSS increase ${pick('/r2', mb).rss.map((v) => fmt(v)).join(', ')} MiB.`,
          )
          .join(' ') +
        ` Our whole uploadBlob (auth, D1 row included) runs at ${fmt((ourRate[big] / r2Rate) * 100)}% of the local R2's own rate at ${big} MB; the reference at ${fmt(refRate[big] / r2Rate)}x it.` +
        (wrongProbe > 0 ? ` WARNING: ${wrongProbe} probe upload(s) answered a wrong CID or size.` : ''),
    )
  } finally {
    await probe.stop()
  }
  const [small, big] = [Math.min(...cfg.sizesMB), Math.max(...cfg.sizesMB)]
  report.note(
    `uploadBlob: ${cfg.rounds} round(s) of ${cfg.sizesMB.join(' and ')} MB (random, first 32 bytes renewed per upload so nothing dedupes), POSTed raw as application/octet-stream with Content-Length, ` +
      `timed from request sent to JSON response parsed, after one unmeasured ${Math.min(...cfg.sizesMB)} MB upload on each server; the reference was started with blobUploadLimit ${REFERENCE_BLOB_UPLOAD_LIMIT} bytes (its default is 5 MB). ` +
      `Peak RSS increase, median, ${small} MB → ${big} MB: ours ${fmt(peaks[small].ours)} → ${fmt(peaks[big].ours)} MiB, reference ${fmt(peaks[small].ref)} → ${fmt(peaks[big].ref)} MiB.`,
  )
}
