/**
 * Firehose clients for the e2e suites: a `ws` subscriber to
 * com.atproto.sync.subscribeRepos that decodes and keeps every frame and can
 * wait (always with a timeout) for a count, a seq or the close; the DID
 * document lookup a relay uses to find the signing key; and a consumer that
 * never reads, run as a Node child so `ws`'s real `_socket.pause()` applies.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import WebSocket from 'ws'
import { REPO_ROOT } from '../harness'
import { type Frame, decodeFrame, seqOf } from './firehose-verify'

const NODE = join(REPO_ROOT, 'node_modules/node/bin/node')
const STALLED_SCRIPT = join(import.meta.dir, 'stalled-consumer.mjs')

export const DEFAULT_WAIT_MS = 30_000

/** The subscribeRepos WebSocket URL of a PDS, with an optional cursor. */
export const firehoseUrl = (pds: { url: string }, cursor?: number | string): string => {
  const base = `${pds.url.replace(/^http/, 'ws')}/xrpc/com.atproto.sync.subscribeRepos`
  return cursor === undefined ? base : `${base}?cursor=${cursor}`
}

/** Rejects with `what()` after `ms` unless `p` settles first. */
export const within = <T>(p: Promise<T>, ms: number, what: () => string): Promise<T> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`timed out after ${ms} ms: ${what()}`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

export interface CloseInfo {
  code: number
  reason: string
}

/** One subscriber: every frame it received, decoded, in order. */
export class Subscriber {
  readonly frames: Frame[] = []
  /** Messages that did not decode (kept so a test can report them). */
  readonly undecodable: string[] = []
  readonly opened: Promise<void>
  readonly closed: Promise<CloseInfo>
  closeInfo: CloseInfo | null = null
  private waiters = new Set<() => void>()

  constructor(
    readonly url: string,
    readonly ws: WebSocket = new WebSocket(url),
  ) {
    this.opened = new Promise((ok, fail) => {
      ws.once('open', () => ok())
      ws.once('error', (err) => fail(err))
      ws.once('close', (code) => fail(new Error(`closed (${code}) before opening`)))
    })
    this.opened.catch(() => {})
    this.closed = new Promise((ok) => {
      ws.once('close', (code: number, reason: Buffer) => {
        this.closeInfo = { code, reason: String(reason) }
        ok(this.closeInfo)
        this.wake()
      })
    })
    ws.on('error', () => {}) // surfaced through opened/closed
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
      const bytes = Array.isArray(data)
        ? new Uint8Array(Buffer.concat(data))
        : new Uint8Array(data instanceof ArrayBuffer ? data : data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength))
      try {
        this.frames.push(decodeFrame(bytes))
      } catch (err) {
        this.undecodable.push(String(err))
      }
      this.wake()
    })
  }

  private wake(): void {
    for (const w of this.waiters) w()
  }

  /** Seq of the last frame received (null before any). */
  get lastSeq(): number | null {
    const last = this.frames.at(-1)
    return last ? seqOf(last) : null
  }

  /** Resolves once `done()` holds (checked on every frame and on close); bounded by `ms`. */
  waitUntil(done: () => boolean, what: string, ms = DEFAULT_WAIT_MS): Promise<void> {
    if (done()) return Promise.resolve()
    let waiter: () => void = () => {}
    const p = new Promise<void>((ok, fail) => {
      waiter = () => {
        if (done()) ok()
        else if (this.closeInfo) fail(new Error(`socket closed (${this.closeInfo.code} ${this.closeInfo.reason}) while waiting for ${what}`))
      }
      this.waiters.add(waiter)
    })
    return within(p, ms, () => `${what} (have ${this.frames.length} frames, last seq ${this.lastSeq})`).finally(() =>
      this.waiters.delete(waiter),
    )
  }

  waitForCount(n: number, ms = DEFAULT_WAIT_MS): Promise<void> {
    return this.waitUntil(() => this.frames.length >= n, `${n} frames`, ms)
  }

  waitForSeq(seq: number, ms = DEFAULT_WAIT_MS): Promise<void> {
    return this.waitUntil(() => (this.lastSeq ?? -1) >= seq, `seq ${seq}`, ms)
  }

  /** Waits for a `#commit` frame whose commit CID is `cid`. */
  waitForCommit(cid: string, ms = DEFAULT_WAIT_MS): Promise<void> {
    return this.waitUntil(() => this.frames.some((f) => String(f.body.commit) === cid), `commit ${cid}`, ms)
  }

  /** Waits until the TCP connection is gone (the `close` event). */
  waitForClose(ms = DEFAULT_WAIT_MS): Promise<CloseInfo> {
    return within(this.closed, ms, () => `close of ${this.url}`)
  }

  /**
   * Waits for the server's close frame: `ws` moves to CLOSING when it arrives
   * (its `close` event waits for the TCP connection to end as well, which
   * local workerd holds open ~10 s after a server-initiated close).
   */
  waitForServerClose(ms = DEFAULT_WAIT_MS): Promise<void> {
    if (this.closingByUs) return Promise.reject(new Error('we closed this socket ourselves'))
    let timer: ReturnType<typeof setInterval> | undefined
    const p = new Promise<void>((ok) => {
      const poll = (): void => {
        if (this.ws.readyState === WebSocket.CLOSING || this.ws.readyState === WebSocket.CLOSED) ok()
      }
      timer = setInterval(poll, 10)
      poll()
    })
    return within(p, ms, () => `the server's close frame on ${this.url}`).finally(() => clearInterval(timer))
  }

  private closingByUs = false

  /**
   * Closes from our side: a close frame, then (the close handshake through
   * local workerd can take seconds) the TCP connection is cut after `ms`.
   */
  async close(ms = 1_000): Promise<void> {
    if (this.closeInfo) return
    this.closingByUs = true
    if (this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.terminate()
    } else {
      this.ws.close(1000)
    }
    await within(this.closed, ms, () => `our close of ${this.url}`).catch(() => this.ws.terminate())
    await within(this.closed, 5_000, () => `terminate of ${this.url}`).catch(() => {})
  }
}

/** Connects a subscriber and waits for the WebSocket to open. */
export const subscribe = async (pds: { url: string }, cursor?: number | string, ms = DEFAULT_WAIT_MS): Promise<Subscriber> => {
  const sub = new Subscriber(firehoseUrl(pds, cursor))
  await within(sub.opened, ms, () => `open of ${sub.url}`)
  return sub
}

/**
 * The last seq in the log, read from the log itself: replays from `from` (a
 * seq known to be at or before the head) and takes the last frame that comes.
 * A live socket's last seq is not enough: it may lag, or have skipped frames.
 */
export const logHead = async (pds: { url: string }, from: number, settleMs = 300): Promise<number> => {
  const tail = await subscribe(pds, from)
  await new Promise((ok) => setTimeout(ok, settleMs))
  const head = tail.lastSeq ?? from
  await tail.close()
  return head
}

/**
 * How many times `wrangler dev` hot-reloaded the Worker (it watches the
 * project's sources and node_modules). A reload resets the Durable Object:
 * its WebSockets stop receiving but are NOT closed towards the client, so a
 * test that spans one sees a silent stall. Tests check this to say so.
 */
export const reloadCount = (pds: { output(): string }): number =>
  (pds.output().match(/Reloading local server/g) ?? []).length

/** Throws if `wrangler dev` reloaded since `before` (see reloadCount). */
export const assertNoReload = (pds: { output(): string }, before: number): void => {
  const now = reloadCount(pds)
  if (now !== before) {
    throw new Error(
      `wrangler dev hot-reloaded ${now - before}× during this test (files under the project or node_modules changed): ` +
        'the firehose Durable Object was reset and its sockets went silent, so this result says nothing about the server; rerun',
    )
  }
}

/**
 * The account's signing key as a relay finds it: the `#atproto` Multikey
 * verification method of the did:web document the PDS serves.
 */
export const resolveAtprotoKey = async (pds: { url: string; did: string }): Promise<string> => {
  const res = await fetch(`${pds.url}/.well-known/did.json`, { signal: AbortSignal.timeout(10_000) })
  if (res.status !== 200) throw new Error(`did.json: HTTP ${res.status}`)
  const doc = (await res.json()) as {
    id: string
    verificationMethod?: { id: string; type: string; publicKeyMultibase?: string }[]
  }
  if (doc.id !== pds.did) throw new Error(`did.json id ${doc.id}, expected ${pds.did}`)
  const method = doc.verificationMethod?.find((m) => m.id === '#atproto' || m.id === `${pds.did}#atproto`)
  if (!method?.publicKeyMultibase || method.type !== 'Multikey') {
    throw new Error(`no #atproto Multikey in did.json: ${JSON.stringify(doc.verificationMethod)}`)
  }
  return `did:key:${method.publicKeyMultibase}`
}

/** What the stalled consumer reports on stdout (one JSON object a line). */
export interface StalledReport {
  event: 'open' | 'paused' | 'resumed' | 'status' | 'close' | 'error'
  frames?: number
  lastSeq?: number | null
  firstSeq?: number | null
  /** Places where consecutive seqs were not consecutive ("a→b"). */
  gaps?: string[]
  errors?: string[]
  readyState?: number
  code?: number
  reason?: string
  message?: string
}

/**
 * A subscriber that stops reading: a Node 22 child that connects with `ws`,
 * calls `ws._socket.pause()` right after the handshake and reads nothing
 * until told to `resume()`. It counts frames and reports seqs, so a test can
 * check what it finally got.
 */
export class StalledConsumer {
  readonly reports: StalledReport[] = []
  private waiters = new Set<() => void>()
  private stderr = ''

  private constructor(private readonly child: ChildProcess) {
    let buf = ''
    child.stdout?.on('data', (d) => {
      buf += String(d)
      let nl = buf.indexOf('\n')
      while (nl >= 0) {
        const line = buf.slice(0, nl).trim()
        buf = buf.slice(nl + 1)
        if (line) {
          try {
            this.reports.push(JSON.parse(line) as StalledReport)
          } catch {
            this.reports.push({ event: 'error', message: `bad line: ${line}` })
          }
        }
        nl = buf.indexOf('\n')
      }
      for (const w of this.waiters) w()
    })
    child.stderr?.on('data', (d) => {
      this.stderr += String(d)
    })
    child.once('exit', (code) => {
      this.reports.push({ event: 'error', message: `child exited (${code}): ${this.stderr.slice(-2000)}` })
      for (const w of this.waiters) w()
    })
  }

  static async start(url: string, ms = DEFAULT_WAIT_MS): Promise<StalledConsumer> {
    const child = spawn(NODE, [STALLED_SCRIPT, url], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    const consumer = new StalledConsumer(child)
    await consumer.waitFor((r) => r.event === 'paused', 'the paused report', ms)
    return consumer
  }

  /** The first report from index `from` on that matches. */
  waitFor(match: (r: StalledReport) => boolean, what: string, ms = DEFAULT_WAIT_MS, from = 0): Promise<StalledReport> {
    const find = (): StalledReport | undefined => this.reports.slice(from).find(match)
    const failure = (): StalledReport | undefined => this.reports.find((r) => r.event === 'error')
    let waiter: () => void = () => {}
    const p = new Promise<StalledReport>((ok, fail) => {
      waiter = () => {
        const hit = find()
        if (hit) return ok(hit)
        const bad = failure()
        if (bad) fail(new Error(`stalled consumer: ${bad.message}`))
      }
      this.waiters.add(waiter)
      waiter()
    })
    return within(p, ms, () => `stalled consumer: ${what}; reports ${JSON.stringify(this.reports.slice(-5))}`).finally(() =>
      this.waiters.delete(waiter),
    )
  }

  private send(command: string): void {
    this.child.stdin?.write(`${command}\n`)
  }

  /** Starts reading again. */
  resume(): void {
    this.send('resume')
  }

  /** Asks for a status report; resolves with it. */
  async status(ms = 10_000): Promise<StalledReport> {
    const from = this.reports.length
    this.send('status')
    return this.waitFor((r) => r.event === 'status', 'a status report', ms, from)
  }

  /** Kills the child (it owns only its socket). */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const gone = new Promise<void>((ok) => this.child.once('exit', () => ok()))
    this.child.kill('SIGTERM')
    await within(gone, 5_000, () => 'stalled consumer exit').catch(() => this.child.kill('SIGKILL'))
  }
}
