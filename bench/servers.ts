/**
 * The two servers under test, behind one shape: OURS (`wrangler dev` via the
 * e2e harness) and THE REFERENCE (@atproto/pds in a Node 22 child). Each says
 * which OS processes to charge CPU and memory to, and ours exposes its
 * structured request log lines.
 */
import { existsSync, readFileSync } from 'node:fs'
import { cp, mkdtemp, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AtpAgent } from '@atproto/api'
import { type PdsProcess, REPO_ROOT, startPds } from '../test/e2e/harness'
// @ts-expect-error: plain .mjs without types (test/peers is outside the typed tree)
import { spawnReferencePds } from '../test/peers/reference-pds.mjs'
import { findWranglerPid, wranglerNodesOf, workerdOf } from './proc'

export type ServerName = 'ours' | 'ref'

export interface Server {
  name: ServerName
  url: string
  did: string
  handle: string
  password: string
  /** Processes whose CPU/RSS is the server's (ours: every workerd of our wrangler dev). */
  pids(): number[]
  /** Extra process groups reported separately (ours: proxy vs worker workerd, wrangler's node). */
  breakdown(): Record<string, number[]>
  /** Everything the server logged so far (ours only; '' for the reference). */
  log(): string
  /** Where wrangler keeps the local D1, R2 and KV state (ours only). */
  persistDir?: string
  /** Stop and start again with the same state (ours only). */
  restart?(): Promise<void>
  stop(): Promise<void>
}

/** One log line of our request middleware (src/xrpc/middleware.ts). */
export interface RequestLog {
  method: string
  path: string
  status: number
  ms: number
  d1: { queries: number; rowsRead: number; rowsWritten: number }
}

/** The request log lines in a slice of our wrangler output. */
export const parseRequestLogs = (text: string): RequestLog[] => {
  const out: RequestLog[] = []
  for (const line of text.split('\n')) {
    const start = line.indexOf('{"requestId"')
    if (start < 0) continue
    try {
      const entry = JSON.parse(line.slice(start)) as RequestLog
      if (entry.d1 && typeof entry.path === 'string') out.push(entry)
    } catch {
      // a line split across chunks or not ours: skip
    }
  }
  return out
}

/** What `wrangler dev` builds the Worker from. */
const BUILD_INPUTS = ['src', 'drizzle', 'migrations', 'wrangler.toml', 'tsconfig.json', 'worker-configuration.d.ts']

/**
 * A copy of the Worker's sources in a temp dir (node_modules linked back), so
 * `wrangler dev` builds the code as it was when the run began: it watches its
 * sources and would hot-reload on any edit to the working tree mid-run,
 * dropping every firehose socket and mixing two versions in one table.
 */
const snapshotSources = async (): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), 'pds-bench-src-'))
  for (const input of BUILD_INPUTS) await cp(join(REPO_ROOT, input), join(dir, input), { recursive: true })
  await symlink(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'))
  return dir
}

/**
 * Server-side errors in our wrangler output: what the Worker logged
 * (src/index.ts onError: `{"requestId", "error": stack}`) and what the
 * runtime reported itself (`✘ [ERROR] ...`, e.g. a request cancelled as hung).
 */
export const parseErrorLogs = (text: string): string[] =>
  text
    .split('\n')
    .filter((line) => (line.includes('{"requestId"') && line.includes('"error"')) || line.includes('[ERROR]'))
    .map((line) => (line.includes('{"requestId"') ? line.slice(line.indexOf('{"requestId"')) : line.trim()))

/** Where both servers forward AppView calls (the proxy phase's stand-in). */
export interface AppViewTarget {
  url: string
  did: string
}

export interface OursOptions {
  appView?: AppViewTarget
  handle?: string
  /** Extra `--var`s, e.g. PDS_DID and PLC_URL for a deployment that an existing account moves to. */
  vars?: Record<string, string>
}

export const startOurs = async (opts: OursOptions = {}): Promise<Server> => {
  const { appView } = opts
  const sources = await snapshotSources()
  let pds: PdsProcess
  try {
    pds = await startPds({
      handle: opts.handle ?? 'bench.test',
      wranglerConfig: join(sources, 'wrangler.toml'),
      vars: { ...(appView ? { BSKY_APPVIEW_URL: appView.url, BSKY_APPVIEW_DID: appView.did } : {}), ...opts.vars },
    })
  } catch (err) {
    await rm(sources, { recursive: true, force: true })
    throw err
  }
  let wrangler = findWranglerPid(pds.port)
  const workerd = () => workerdOf(wrangler)
  return {
    name: 'ours',
    url: pds.url,
    did: pds.did,
    handle: pds.handle,
    password: pds.password,
    pids: () => workerd().map((w) => w.pid),
    breakdown: () => ({
      'workerd (worker)': workerd()
        .filter((w) => w.role === 'worker')
        .map((w) => w.pid),
      'workerd (proxy)': workerd()
        .filter((w) => w.role === 'proxy')
        .map((w) => w.pid),
      'wrangler node': wranglerNodesOf(wrangler),
    }),
    log: () => pds.output(),
    persistDir: pds.persistDir,
    restart: async () => {
      await pds.restart()
      wrangler = findWranglerPid(pds.port)
    },
    stop: async () => {
      await pds.dispose()
      await rm(sources, { recursive: true, force: true })
    },
  }
}

/** Passed to the reference PDS as `blobUploadLimit` (PDS_BLOB_UPLOAD_LIMIT); ours defaults to the same. */
export const REFERENCE_BLOB_UPLOAD_LIMIT = 100 * 1024 * 1024

export interface ReferenceOptions {
  appView?: AppViewTarget
  handle?: string
  password?: string
  /** A PLC directory to register with instead of a new in-memory one (a second PDS for the same DIDs). */
  plcUrl?: string
  /** Extra @atproto/pds ServerEnvironment fields, applied last. */
  env?: Record<string, unknown>
}

/** The reference, with what a migration from or to it needs. */
export interface ReferenceServer extends Server {
  /** Its PLC directory (in memory, in the reference's process, unless `plcUrl` was given). */
  plcUrl: string
  /** A full-access token of its account. */
  accessJwt: string
  /** How many lines it has logged so far (it logs every request, as deployed). */
  logLines(): number
}

/**
 * The reference runs as its distribution configures it: the official installer's pds.env sets
 * LOG_ENABLED=true, so it logs every request (pino, one JSON line each), as ours does. Its lines go
 * to a file (LOG_DESTINATION), like Docker's json-file log driver; ours go to wrangler's output.
 */
const referenceLogging = (): { env: Record<string, string>; path: string } => {
  const path = join(tmpdir(), `pds-bench-ref-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.log`)
  return { env: { LOG_ENABLED: 'true', LOG_DESTINATION: path }, path }
}

export const startReference = async (opts: ReferenceOptions = {}): Promise<ReferenceServer> => {
  const { appView } = opts
  const logging = referenceLogging()
  // The reference's default blobUploadLimit is 5 MB; give it ours (100 MiB) for the uploadBlob phase.
  const ref = (await spawnReferencePds({
    handle: opts.handle ?? 'bench.test',
    password: opts.password ?? 'bench-password',
    plcUrl: opts.plcUrl,
    processEnv: logging.env,
    env: { blobUploadLimit: REFERENCE_BLOB_UPLOAD_LIMIT, ...(appView ? { bskyAppViewUrl: appView.url, bskyAppViewDid: appView.did } : {}), ...opts.env },
  })) as {
    url: string
    plcUrl: string
    did: string
    handle: string
    password: string
    accessJwt: string
    pid: number
    stop(): Promise<void>
  }
  return {
    name: 'ref',
    url: ref.url,
    did: ref.did,
    handle: ref.handle,
    password: ref.password,
    plcUrl: ref.plcUrl,
    accessJwt: ref.accessJwt,
    pids: () => [ref.pid],
    breakdown: () => ({ node: [ref.pid] }),
    log: () => '',
    logLines: () => (existsSync(logging.path) ? readFileSync(logging.path, 'utf8').split('\n').filter(Boolean).length : 0),
    stop: async () => {
      await ref.stop()
      await rm(logging.path, { force: true })
    },
  }
}

/** A logged-in official client. */
export const agentFor = async (server: Server): Promise<AtpAgent> => {
  const agent = new AtpAgent({ service: server.url })
  await agent.login({ identifier: server.handle, password: server.password })
  return agent
}

/** Latencies of `n` sequential GETs of `path` (`/`: the stack's fixed per-request cost), ms. */
export const getLatencies = async (server: Server, path: string, n: number): Promise<number[]> => {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    const res = await fetch(`${server.url}${path}`)
    await res.arrayBuffer()
    if (res.status !== 200) throw new Error(`${server.name} GET ${path}: HTTP ${res.status}`)
    out.push(performance.now() - t0)
  }
  return out
}
