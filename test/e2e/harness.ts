/**
 * End-to-end harness: runs the real Worker under `wrangler dev` (local D1, R2,
 * KV and Durable Objects persisted to a temp dir) and hands back what a test
 * needs to talk to it and to check its signatures.
 *
 * wrangler must run under Node 22 (it answers 503 under Bun), so the child is
 * `node_modules/node/bin/node node_modules/wrangler/bin/wrangler.js ...` even
 * though the tests themselves run under `bun test`.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { cp, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { AtpAgent } from '@atproto/api'
import { Secp256k1Keypair } from '@atproto/crypto'

/** Repository root: wrangler reads wrangler.toml and migrations/ from here. */
export const REPO_ROOT = resolve(import.meta.dir, '../..')
const NODE = join(REPO_ROOT, 'node_modules/node/bin/node')
const WRANGLER = join(REPO_ROOT, 'node_modules/wrangler/bin/wrangler.js')

const READY_TIMEOUT_MS = 60_000
const MIGRATE_TIMEOUT_MS = 90_000
const STOP_GRACE_MS = 5_000

export interface StartPdsOptions {
  handle?: string
  password?: string
  persistDir?: string
  port?: number
  /** Extra or overriding `--var NAME:value` settings (a `PDS_DID` here is also the returned `did`). */
  vars?: Record<string, string>
  /** The account's secp256k1 signing key (hex); a new one by default. E.g. the key a did:plc names. */
  signingKeyHex?: string
  /** Another wrangler config (only for testing the harness itself). */
  wranglerConfig?: string
}

export interface PdsProcess {
  /** Base URL requests go to: http://127.0.0.1:<port>. */
  url: string
  /** The URL the PDS believes it is served on (PDS_HOSTNAME): http://localhost:<port>. */
  publicUrl: string
  port: number
  /** The account's DID: did:web:localhost%3A<port> (also the service DID) unless vars.PDS_DID says otherwise. */
  did: string
  handle: string
  password: string
  /** The HS256 secret the PDS signs its session tokens with. */
  jwtSecret: string
  signingKeyHex: string
  /** did:key of the signing key's public half. */
  didKey: string
  persistDir: string
  /** Everything wrangler printed so far (both runs after a restart). */
  output(): string
  stop(): Promise<void>
  /** Stop, then start again on the same port with the same persisted state. */
  restart(): Promise<void>
  /** kill -9 of wrangler dev and its workerd (a crash, mid-request if one is running), then start again on the same state. */
  crashAndRestart(): Promise<void>
  /** Stop, and delete persistDir if the harness created it. */
  dispose(): Promise<void>
}

export const DEFAULT_HANDLE = 'alice.test'
export const DEFAULT_PASSWORD = 'hunter2-correct-horse'

const running = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of running) killGroup(child, 'SIGKILL')
})

/**
 * Waits until `port` can be listened on again: a stopped workerd killed with
 * its process group may hold its socket a moment longer, and a restart on
 * the same port would then fail with "Address already in use".
 */
const portReleased = async (port: number, timeoutMs = 10_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const free = await new Promise<boolean>((ok) => {
      const srv = createServer()
      srv.once('error', () => ok(false))
      srv.listen(port, '127.0.0.1', () => srv.close(() => ok(true)))
    })
    if (free || Date.now() > deadline) return
    await new Promise((ok) => setTimeout(ok, 100))
  }
}

/** A TCP port nobody listens on right now (the OS picks it). */
export const freePort = (): Promise<number> =>
  new Promise((ok, fail) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', fail)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr ? addr.port : 0
      srv.close(() => (port ? ok(port) : fail(new Error('no port'))))
    })
  })

const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes
const stripAnsi = (s: string): string => s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')

/** The environment every `wrangler dev` of the tests and the bench runs with. */
export const childEnv = (): NodeJS.ProcessEnv => ({
  // wrangler dev's local observability collector (a streaming tail of every
  // request, span and log line) and data explorer (which wraps the Durable
  // Object's module) are development tools that do not exist on Cloudflare;
  // measured in the bench's isolate phase, they more than doubled the Worker
  // process's CPU per write. Off for the tests and the bench; a variable set
  // in the environment still wins.
  X_LOCAL_OBSERVABILITY: 'false',
  X_LOCAL_EXPLORER: 'false',
  ...process.env,
  CI: 'true',
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  WRANGLER_SEND_METRICS: 'false',
  NO_COLOR: '1',
  FORCE_COLOR: '0',
})

const killGroup = (child: ChildProcess, signal: NodeJS.Signals): void => {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    try {
      child.kill(signal)
    } catch {
      // already gone
    }
  }
}

const exited = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((ok) => child.once('exit', () => ok()))

const withTimeout = <T>(p: Promise<T>, ms: number, what: () => string): Promise<T> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(what())), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

/** Runs a wrangler command to completion; rejects with its output on failure. */
interface LogEntry {
  title: string
  lines: string[]
}

const runWrangler = async (args: string[], log: LogEntry[]): Promise<void> => {
  const child = spawn(NODE, [WRANGLER, ...args], {
    cwd: REPO_ROOT,
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  running.add(child)
  const out: string[] = []
  log.push({ title: `wrangler ${args.join(' ')}`, lines: out })
  child.stdout?.on('data', (d) => out.push(String(d)))
  child.stderr?.on('data', (d) => out.push(String(d)))
  try {
    const code = await withTimeout(
      new Promise<number | null>((ok) => child.once('exit', (c) => ok(c))),
      MIGRATE_TIMEOUT_MS,
      () => `wrangler ${args.join(' ')} timed out:\n${out.join('')}`,
    )
    if (code !== 0) {
      throw new Error(`wrangler ${args.join(' ')} exited with ${code}:\n${out.join('')}`)
    }
  } finally {
    killGroup(child, 'SIGKILL')
    running.delete(child)
  }
}

const exists = (path: string): Promise<boolean> =>
  stat(path).then(
    () => true,
    () => false,
  )

/**
 * A persist dir with migrations/ already applied, shared by every start in
 * this machine's temp dir and keyed by the migrations' content: applying them
 * costs ~4-11 s per start, copying the result a few ms. The first caller
 * builds it in a staging dir and renames it into place, so concurrent test
 * processes never see a half-built template.
 */
const migratedTemplate = async (log: LogEntry[]): Promise<string> => {
  const dir = join(REPO_ROOT, 'migrations')
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort()
  const hash = createHash('sha256')
  for (const f of files) hash.update(f).update('\0').update(await readFile(join(dir, f))).update('\0')
  const template = join(tmpdir(), `pds-e2e-migrated-${hash.digest('hex').slice(0, 16)}`)
  if (await exists(join(template, '.complete'))) return template
  const staging = await mkdtemp(join(tmpdir(), 'pds-e2e-staging-'))
  await runWrangler(['d1', 'migrations', 'apply', 'DB', '--local', '--persist-to', staging], log)
  await writeFile(join(staging, '.complete'), files.join('\n'))
  try {
    await rename(staging, template)
  } catch {
    // Another process won the race; its template is as good as ours.
    await rm(staging, { recursive: true, force: true })
  }
  return template
}

/** Starts a PDS under `wrangler dev` and waits until it is ready. */
export const startPds = async (opts: StartPdsOptions = {}): Promise<PdsProcess> => {
  const port = opts.port ?? (await freePort())
  const persistDir = opts.persistDir ?? (await mkdtemp(join(tmpdir(), 'pds-e2e-')))
  const handle = opts.handle ?? DEFAULT_HANDLE
  const password = opts.password ?? DEFAULT_PASSWORD
  const keypair = opts.signingKeyHex
    ? await Secp256k1Keypair.import(opts.signingKeyHex, { exportable: true })
    : await Secp256k1Keypair.create({ exportable: true })
  const signingKeyHex = toHex(await keypair.export())
  const jwtSecret = randomBytes(32).toString('hex')
  const hostname = `localhost:${port}`
  const did = opts.vars?.PDS_DID ?? `did:web:localhost%3A${port}`
  const configArgs = opts.wranglerConfig ? ['--config', opts.wranglerConfig] : []

  const vars: Record<string, string> = {
    PDS_HOSTNAME: hostname,
    PDS_DID: did,
    PDS_HANDLE: handle,
    PDS_PASSWORD: password,
    JWT_SECRET: jwtSecret,
    PDS_SIGNING_KEY: signingKeyHex,
    // No requestCrawl to real relays from tests (there is no network; empty disables).
    RELAY_HOSTS: '',
    ...opts.vars,
  }

  const log: LogEntry[] = []
  if (opts.persistDir || opts.wranglerConfig) {
    // Existing state (or another config): apply pending migrations in place.
    await runWrangler(
      ['d1', 'migrations', 'apply', 'DB', '--local', '--persist-to', persistDir, ...configArgs],
      log,
    )
  } else {
    await cp(await migratedTemplate(log), persistDir, { recursive: true })
  }

  let child: ChildProcess | null = null

  const launch = async (): Promise<void> => {
    const inspectorPort = await freePort()
    const args = [
      WRANGLER,
      'dev',
      ...configArgs,
      '--port',
      String(port),
      '--ip',
      '127.0.0.1',
      '--inspector-port',
      String(inspectorPort),
      '--persist-to',
      persistDir,
      '--show-interactive-dev-session=false',
    ]
    for (const [name, value] of Object.entries(vars)) args.push('--var', `${name}:${value}`)
    const proc = spawn(NODE, args, {
      cwd: REPO_ROOT,
      env: childEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    child = proc
    running.add(proc)
    const runLog: string[] = []
    log.push({ title: `wrangler dev --port ${port}`, lines: runLog })
    const ready = new Promise<void>((ok, fail) => {
      const onData = (d: Buffer | string): void => {
        runLog.push(stripAnsi(String(d)))
        if (/Ready on /.test(runLog.join(''))) ok()
      }
      proc.stdout?.on('data', onData)
      proc.stderr?.on('data', onData)
      proc.once('exit', (code, signal) => {
        running.delete(proc)
        fail(new Error(`wrangler dev exited early (${code ?? signal}):\n${runLog.join('')}`))
      })
    })
    try {
      await withTimeout(ready, READY_TIMEOUT_MS, () => `wrangler dev not ready after ${READY_TIMEOUT_MS} ms:\n${runLog.join('')}`)
    } catch (err) {
      await stopChild()
      throw err
    }
  }

  /**
   * launch(), again when workerd found one of its sockets taken: besides our
   * port, miniflare picks free ports of its own before binding them, and on
   * a busy machine another process may take one in between.
   */
  const launchRetrying = async (): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await launch()
      } catch (err) {
        if (attempt >= 3 || !/Address already in use/.test(String(err))) throw err
        await portReleased(port)
      }
    }
  }

  const stopChild = async (): Promise<void> => {
    const proc = child
    child = null
    if (!proc) return
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGINT')
      try {
        await withTimeout(exited(proc), STOP_GRACE_MS, () => 'stop timeout')
      } catch {
        killGroup(proc, 'SIGKILL')
        await withTimeout(exited(proc), STOP_GRACE_MS, () => 'wrangler did not die').catch(() => {})
      }
    }
    // workerd/esbuild grandchildren share the process group: make sure they go too.
    killGroup(proc, 'SIGKILL')
    running.delete(proc)
  }

  await launchRetrying()

  return {
    url: `http://127.0.0.1:${port}`,
    publicUrl: `http://${hostname}`,
    port,
    did,
    handle,
    password,
    jwtSecret,
    signingKeyHex,
    didKey: keypair.did(),
    persistDir,
    output: () => log.map((e) => `$ ${e.title}\n${e.lines.join('')}`).join('\n'),
    stop: stopChild,
    restart: async () => {
      await stopChild()
      await portReleased(port)
      await launchRetrying()
    },
    crashAndRestart: async () => {
      const proc = child
      child = null
      if (proc) {
        killGroup(proc, 'SIGKILL')
        await withTimeout(exited(proc), STOP_GRACE_MS, () => 'wrangler did not die').catch(() => {})
        running.delete(proc)
      }
      await portReleased(port)
      await launchRetrying()
    },
    dispose: async () => {
      await stopChild()
      if (!opts.persistDir) await rm(persistDir, { recursive: true, force: true })
    },
  }
}

/** Logs in with the official client (createSession) and returns the agent. */
export const login = async (
  pds: Pick<PdsProcess, 'url' | 'handle' | 'password'>,
  identifier: string = pds.handle,
): Promise<AtpAgent> => {
  const agent = new AtpAgent({ service: pds.url })
  await agent.login({ identifier, password: pds.password })
  return agent
}

/** Access token of a logged-in agent. */
export const accessJwt = (agent: AtpAgent): string => {
  const jwt = agent.session?.accessJwt
  if (!jwt) throw new Error('agent has no session')
  return jwt
}

/**
 * afterAll helper: stops the PDS (if it started), prints wrangler's output
 * when E2E_LOGS=1 (where a server-side exception shows up), and deletes its
 * temp state unless E2E_KEEP_STATE=1.
 */
export const stopPds = async (pds: PdsProcess | undefined): Promise<void> => {
  if (!pds) return
  if (process.env.E2E_LOGS === '1') console.log(`--- wrangler output (${pds.url}) ---\n${pds.output()}`)
  if (process.env.E2E_KEEP_STATE === '1') {
    console.log(`PDS state kept in ${pds.persistDir}`)
    await pds.stop()
  } else {
    await pds.dispose()
  }
}
