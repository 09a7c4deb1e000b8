/**
 * The blob probe (bench/blob-probe/worker.ts) under a `wrangler dev` of its
 * own: the Worker's upload code with R2 replaced by a sink (/hash), and
 * wrangler's local R2 alone (/r2). Timing both beside the real uploadBlob
 * says how much of an upload's time is ours and how much the local R2
 * simulator's.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { childEnv, freePort, REPO_ROOT } from '../test/e2e/harness'
import { findWranglerPid, workerdOf } from './proc'
import { sleep } from './rounds'

const NODE = join(REPO_ROOT, 'node_modules/node/bin/node')
const WRANGLER = join(REPO_ROOT, 'node_modules/wrangler/bin/wrangler.js')
const READY_TIMEOUT_MS = 60_000

export interface Probe {
  url: string
  /** Every workerd of the probe's wrangler dev (CPU). */
  pids(): number[]
  /** The user-worker workerd, which also runs the local R2 simulator (RSS). */
  workerPids(): number[]
  stop(): Promise<void>
}

const signalGroup = (child: ChildProcess, signal: NodeJS.Signals): void => {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    // already gone
  }
}

export const startProbe = async (): Promise<Probe> => {
  const [port, inspectorPort] = [await freePort(), await freePort()]
  const persistDir = await mkdtemp(join(tmpdir(), 'blob-probe-'))
  const args = [WRANGLER, 'dev', '--config', join(import.meta.dir, 'blob-probe/wrangler.toml'), '--port', String(port), '--ip', '127.0.0.1']
  args.push('--inspector-port', String(inspectorPort), '--persist-to', persistDir, '--show-interactive-dev-session=false')
  const child = spawn(NODE, args, {
    cwd: REPO_ROOT,
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  let output = ''
  const stop = async (): Promise<void> => {
    signalGroup(child, 'SIGINT')
    for (let i = 0; i < 50 && child.exitCode === null && child.signalCode === null; i++) await sleep(100)
    signalGroup(child, 'SIGKILL')
    await rm(persistDir, { recursive: true, force: true })
  }
  try {
    await new Promise<void>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`blob probe not ready after ${READY_TIMEOUT_MS} ms:\n${output}`)), READY_TIMEOUT_MS)
      const onData = (d: Buffer): void => {
        output += String(d)
        if (/Ready on /.test(output)) {
          clearTimeout(timer)
          ok()
        }
      }
      child.stdout.on('data', onData)
      child.stderr.on('data', onData)
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        fail(new Error(`blob probe's wrangler dev exited (${code ?? signal}):\n${output}`))
      })
    })
  } catch (err) {
    await stop()
    throw err
  }
  const wrangler = findWranglerPid(port)
  return {
    url: `http://127.0.0.1:${port}`,
    pids: () => workerdOf(wrangler).map((w) => w.pid),
    workerPids: () =>
      workerdOf(wrangler)
        .filter((w) => w.role === 'worker')
        .map((w) => w.pid),
    stop,
  }
}
