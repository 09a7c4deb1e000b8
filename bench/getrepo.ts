/**
 * com.atproto.sync.getRepo timing: downloads the whole repo as a CAR (CAR v1:
 * varint-prefixed header, then varint-prefixed CID+block sections), counts
 * its blocks as a sanity check, and samples the server's RSS meanwhile.
 */
import { sampleRss } from './proc'

export interface RepoDownload {
  ms: number
  /** Time to the first body byte. */
  firstByteMs: number
  bytes: number
  /** Body chunks as the client's reader got them (a lower bound of the server's writes). */
  chunks: number
  blocks: number
  /** Peak RSS during the download minus RSS just before it, KiB. */
  rssPeakDeltaKib: number
  rssSamples: number
}

const readVarint = (buf: Uint8Array, at: number): [value: number, next: number] => {
  let value = 0
  let shift = 0
  for (let i = at; i < buf.length; i++) {
    value += (buf[i] & 0x7f) * 2 ** shift
    if ((buf[i] & 0x80) === 0) return [value, i + 1]
    shift += 7
  }
  throw new Error('truncated varint in CAR')
}

/** Number of blocks in a CAR v1 file (header excluded). */
export const countCarBlocks = (car: Uint8Array): number => {
  let [len, at] = readVarint(car, 0)
  at += len
  let blocks = 0
  while (at < car.length) {
    ;[len, at] = readVarint(car, at)
    at += len
    blocks++
  }
  if (at !== car.length) throw new Error('CAR section overruns the file')
  return blocks
}

/** Downloads `did`'s repo from `url`, sampling the RSS of `pids` every 10 ms. */
export const downloadRepo = async (url: string, did: string, pids: number[]): Promise<RepoDownload> => {
  const sampler = sampleRss(pids, 10)
  const t0 = performance.now()
  let firstByteMs = Number.NaN
  const chunks: Uint8Array[] = []
  let rss: ReturnType<ReturnType<typeof sampleRss>['stop']>
  try {
    const res = await fetch(`${url}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(did)}`)
    if (res.status !== 200 || !res.body) throw new Error(`getRepo: HTTP ${res.status} ${await res.text()}`)
    const reader = res.body.getReader()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      if (Number.isNaN(firstByteMs)) firstByteMs = performance.now() - t0
      chunks.push(value)
    }
  } finally {
    rss = sampler.stop()
  }
  const ms = performance.now() - t0
  const car = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0))
  let offset = 0
  for (const c of chunks) {
    car.set(c, offset)
    offset += c.byteLength
  }
  return {
    ms,
    firstByteMs,
    bytes: car.byteLength,
    chunks: chunks.length,
    blocks: countCarBlocks(car),
    rssPeakDeltaKib: rss.peakKib - rss.baselineKib,
    rssSamples: rss.samples,
  }
}
