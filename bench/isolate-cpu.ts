/**
 * The CPU our Worker's own JavaScript spends on one warm createRecord: what
 * Cloudflare bills and limits (10 ms per request on the Free plan), without
 * D1's work (its SQLite and its JavaScript run elsewhere on Cloudflare, and
 * in other isolates here), and without what only `wrangler dev` runs
 * (its entry Worker, log collector and HTTP plumbing between them).
 *
 * How: `perf record` samples the user worker's workerd process on CPU time
 * (cpu-clock: a thread is only sampled while it runs, so waiting on I/O and a
 * busy machine do not inflate it, unlike the inspector's wall-clock
 * profiler), with call stacks, while the writes run; V8 writes a map of its
 * compiled JavaScript (`--perf-basic-prof`, passed through miniflare's
 * MINIFLARE_WORKERD_V8_FLAGS) so each sample's innermost JavaScript frame
 * names its script. A sample counts as ours when that script is our bundle
 * or a runtime module running inside our isolate on our behalf (the D1
 * binding's client, node:buffer); native work called from our JavaScript
 * (hashing, the D1 binding's serialisation) is under such a frame and counts
 * too (V8 is also told to give interpreted functions frames of their own,
 * `--interpreted-frames-native-stack`, or code not yet compiled would go
 * unnamed). Samples in D1's simulator (`database.worker.js`, SQLite),
 * wrangler's entry and collector Workers, V8's promise machinery with no
 * script's frame on the stack (whose it is cannot be told; every isolate's
 * async code makes it) and runtime work with no JavaScript on the stack (the
 * event loop, sockets, HTTP) are reported apart.
 *
 * Needs `perf` (linux-tools) and permission to sample another process; the
 * bench says so and skips the figure otherwise.
 */
import type { AtpAgent } from '@atproto/api'
import { spawn, spawnSync } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { findWranglerPid, workerdOf } from './proc'
import type { Server } from './servers'
import { median } from './stats'
import { createPost } from './writes'

const SAMPLE_HZ = 2000

/** Where a CPU sample was spent. */
export type SampleOwner = 'ours' | 'd1' | 'dev' | 'promises' | 'runtime' | 'gc'

/** Scripts that run inside our isolate for our code (the D1 binding's client, Node compatibility modules). */
const OUR_RUNTIME = /^(cloudflare-internal:d1-api|node-internal:|cloudflare-internal:)/

/** Classifies one `perf script` sample (its stack, innermost frame first). */
export const ownerOf = (frames: string[], ourScript: string): SampleOwner => {
  for (const frame of frames) {
    const js = /JS:\S* (\S+?):\d+:\d+/.exec(frame)
    if (!js) continue
    const script = js[1]
    if (script === ourScript || OUR_RUNTIME.test(script)) return 'ours'
    if (script === 'database.worker.js') return 'd1'
    return 'dev'
  }
  const stack = frames.join(' ')
  if (/sqlite3|SqliteDatabase|ActorSqlite|SqlStorage/.test(stack)) return 'd1'
  if (/Heap::|Scavenger|MarkCompact|GCTracer|ConcurrentMarking/.test(stack)) return 'gc'
  // V8 running promise jobs with no JavaScript frame of any script on the stack (resolving,
  // resuming): every isolate's async code makes these, and the sample cannot say whose.
  if (/Builtins_JSRunMicrotasksEntry|Builtins_RunMicrotasks/.test(stack)) return 'promises'
  return 'runtime'
}

export const perfAvailable = (): boolean => spawnSync('perf', ['--version'], { stdio: 'ignore' }).status === 0

export interface IsolateCpu {
  /** Our isolate's JavaScript (and what it calls) per write, ms, one figure per round. */
  oursPerWrite: number[]
  /** All samples of the user worker process per write by owner, ms, summed over the rounds. */
  byOwner: Record<SampleOwner, number>
  writes: number
}

/**
 * Ours with V8's unattributable promise jobs shared out by each owner's
 * JavaScript (ours, D1's simulator, wrangler's Workers): a fair estimate
 * between 'ours' and 'ours + promises'.
 */
export const apportioned = (cpu: IsolateCpu): number => {
  const { ours, d1, dev, promises } = cpu.byOwner
  const js = ours + d1 + dev
  return js > 0 ? median(cpu.oursPerWrite) + (promises * ours) / js : Number.NaN
}

/** The V8 flag our server must be started with for `isolateCpuPerWrite` (set in the environment of `startOurs`). */
export const PERF_V8_FLAGS = { MINIFLARE_WORKERD_V8_FLAGS: '--perf-basic-prof --interpreted-frames-native-stack' }

/** `rounds` x `perRound` createRecord calls on a warm server started with PERF_V8_FLAGS, each round sampled by perf. */
export const isolateCpuPerWrite = async (server: Server, agent: AtpAgent, rounds: number, perRound: number): Promise<IsolateCpu> => {
  const worker = workerdOf(findWranglerPid(Number(new URL(server.url).port))).find((w) => w.role === 'worker')
  if (!worker) throw new Error('no user-worker workerd found')
  const dir = await mkdtemp(join(tmpdir(), 'isolate-cpu-'))
  const result: IsolateCpu = { oursPerWrite: [], byOwner: { ours: 0, d1: 0, dev: 0, promises: 0, runtime: 0, gc: 0 }, writes: rounds * perRound }
  try {
    for (let round = 0; round < rounds; round++) {
      const data = join(dir, `perf-${round}.data`)
      const perf = spawn('perf', ['record', '-q', '-F', String(SAMPLE_HZ), '-g', '-p', String(worker.pid), '-o', data], { stdio: 'ignore' })
      await new Promise((ok) => setTimeout(ok, 500))
      for (let i = 0; i < perRound; i++) await createPost(agent, server.did)
      // The after-response work of the last write (the firehose notification) lands inside the window.
      await new Promise((ok) => setTimeout(ok, 100))
      perf.kill('SIGINT')
      await new Promise((ok) => perf.once('exit', ok))
      const script = spawnSync('perf', ['script', '-i', data], { maxBuffer: 1 << 30, encoding: 'utf8' }).stdout
      // For a closer look (by function, by module): BENCH_PERF_SCRIPT=<file> keeps the last round's samples.
      if (process.env.BENCH_PERF_SCRIPT) {
        writeFileSync(process.env.BENCH_PERF_SCRIPT, script)
        // With the bundle wrangler dev built, so line numbers can be mapped to source modules.
        spawnSync('sh', ['-c', `cp "$(ls -t /tmp/pds-bench-src-*/.wrangler/tmp/dev-*/index.js | head -1)" "${process.env.BENCH_PERF_SCRIPT}.bundle.js"`])
      }
      let ours = 0
      for (const sample of script.split('\n\n')) {
        const lines = sample.trim().split('\n')
        if (lines.length < 2) continue
        const owner = ownerOf(lines.slice(1), 'index.js')
        result.byOwner[owner] += 1000 / SAMPLE_HZ / result.writes
        if (owner === 'ours') ours += 1000 / SAMPLE_HZ
      }
      result.oursPerWrite.push(ours / perRound)
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  return result
}

/** The JIT maps V8 wrote for a server's workerd processes (call after stopping it). */
export const removePerfMaps = (pids: number[]): void => {
  for (const pid of pids) rmSync(`/tmp/perf-${pid}.map`, { force: true })
}

/**
 * Alone: `bun bench/isolate-cpu.ts [--records 10000] [--rounds 3] [--writes 50]`
 * seeds our server, warms it and prints the figures (`npm run bench` reports
 * them in phase 1).
 */
if (import.meta.main) {
  Object.assign(process.env, PERF_V8_FLAGS)
  const { agentFor, startOurs } = await import('./servers')
  const { seedRecords, sequentialWrites } = await import('./writes')
  const arg = (name: string, fallback: number): number => {
    const at = process.argv.indexOf(`--${name}`)
    return at >= 0 ? Number(process.argv[at + 1]) : fallback
  }
  if (!perfAvailable()) throw new Error('perf is not installed')
  const server = await startOurs()
  const pids = server.pids()
  try {
    const agent = await agentFor(server)
    await seedRecords(agent, server.did, arg('records', 10_000), 200)
    await sequentialWrites(agent, server.did, 30)
    const cpu = await isolateCpuPerWrite(server, agent, arg('rounds', 3), arg('writes', 50))
    const f = (x: number) => x.toFixed(2)
    console.log(`our isolate's JavaScript per createRecord (ms): median ${f(median(cpu.oursPerWrite))} (${cpu.oursPerWrite.map(f).join(', ')}); with promise jobs shared out ${f(apportioned(cpu))}`)
    console.log(`user-worker process per write by owner (ms): ${Object.entries(cpu.byOwner).map(([k, v]) => `${k} ${f(v)}`).join(', ')}`)
  } finally {
    await server.stop()
    removePerfMaps(pids)
  }
  process.exit(0)
}
