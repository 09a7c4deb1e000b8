/**
 * Benchmark of com.atproto.repo.importRepo: ours (wrangler dev) against the
 * reference PDS, both taking the same CAR, as in the repo step of an account
 * migration (atproto.com/guides/account-migration).
 *
 *   bun bench/import.ts [--records N] [--rounds R] [--quick]
 *   bun bench/run.ts --only import [--import-records N] [--import-rounds R] [--quick]
 *
 * A source reference PDS (with its in-memory PLC directory) gets an account
 * with N lived-in records (bench/import-records.ts); its CAR is downloaded
 * once (getRepo). Each round starts two fresh targets: ours for that DID
 * (PDS_DID, PLC_URL: it starts deactivated and empty) and a second reference
 * PDS on the same PLC directory; both get the account by createAccount with
 * a service token from the source (goat's steps 1-4), then each imports the
 * CAR, one after the other, alternating which goes first. Timed from request
 * sent to response read; the server's peak RSS is sampled every 10 ms, its
 * CPU read from /proc, and ours is charged the D1 figures of its request log
 * line, with the phase boundaries seen in its local D1 file
 * (bench/import-d1.ts). Run standalone, the figures go to their own section
 * of bench/results.md, kept when the full run rewrites the file.
 */
import { createAccountThere, type Side } from '../test/e2e/helpers/migration'
import { xget } from '../test/e2e/xrpc-client'
import { countCarBlocks } from './getrepo'
import { replayStaging, type ImportTimeline, type StagingReplay, watchImport } from './import-d1'
import { seedLivedInRepo } from './import-records'
import { sampleRss } from './proc'
import { Report } from './report'
import { runStandalone } from './standalone'
import { both, measure, type Measured, type Pair } from './rounds'
import { parseErrorLogs, type RequestLog, type Server, type ServerName, startOurs, startReference } from './servers'
import { fmt, median } from './stats'

export interface ImportConfig {
  records: number
  rounds: number
}

export const IMPORT_CONFIG = { full: { records: 10_000, rounds: 3 }, quick: { records: 2_000, rounds: 2 } }

const HANDLE = 'mover.test'
/** The reference refuses createAccount without one. */
const EMAIL = 'mover@example.com'
const IMPORT_PATH = '/xrpc/com.atproto.repo.importRepo'
/** The reference takes an import body up to blobUploadLimit unless maxImportSize says more. */
const REF_MAX_IMPORT = 1024 * 1024 * 1024
/** A 100,000-record import takes minutes on a loaded machine. */
const IMPORT_TIMEOUT_MS = 60 * 60_000

export interface Hooks {
  progress(msg: string): void
  /** Registers a server for the caller's stop-everything-on-exit. */
  track(server: Server): void
}

interface ImportRun {
  status: number
  /** The response body when the import failed. */
  error: string
  ms: number
  /** Peak and baseline RSS (KiB): `main` ours' user-worker workerd / the reference's node, `all` every workerd. */
  rss: Record<'main' | 'all', { baselineKib: number; peakKib: number }>
  /** Ours: when each batch was seen committed. */
  timeline?: ImportTimeline
}

interface AfterImport {
  indexedRecords: number
  repoBlocks: number
  repoCommit: string
}

/** One timed importRepo of `car` into `server` with `session`. */
const importOnce = async (server: Server, session: Side, car: Uint8Array): Promise<ImportRun> => {
  const sets = server.name === 'ours' ? { main: server.breakdown()['workerd (worker)'], all: server.pids() } : { main: server.pids(), all: server.pids() }
  const samplers = { main: sampleRss(sets.main, 10), all: sampleRss(sets.all, 10) }
  const watch = server.persistDir ? watchImport(server.persistDir) : undefined
  const t0 = performance.now()
  let status = 0
  let error = ''
  try {
    const res = await fetch(`${server.url}${IMPORT_PATH}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${session.token}`, 'content-type': 'application/vnd.ipld.car', 'content-length': String(car.byteLength) },
      body: car,
      signal: AbortSignal.timeout(IMPORT_TIMEOUT_MS),
    })
    const text = await res.text()
    status = res.status
    if (status !== 200) error = text.slice(0, 2000)
  } catch (err) {
    error = String((err as Error)?.message ?? err)
  }
  const ms = performance.now() - t0
  const rss = { main: samplers.main.stop(), all: samplers.all.stop() }
  return { status, error, ms, rss, timeline: watch?.stop() }
}

const afterImport = async (session: Side): Promise<AfterImport> => {
  const res = await xget(session, 'com.atproto.server.checkAccountStatus', undefined, session.token)
  if (res.status !== 200) return { indexedRecords: Number.NaN, repoBlocks: Number.NaN, repoCommit: `checkAccountStatus ${res.status}` }
  return { indexedRecords: res.body.indexedRecords, repoBlocks: res.body.repoBlocks, repoCommit: res.body.repoCommit }
}

/** Builds the source account and its CAR. */
const prepareSource = async (cfg: ImportConfig, hooks: Hooks) => {
  hooks.progress(`import: starting the source reference PDS and seeding ${cfg.records.toLocaleString('en')} records (applyWrites x 200)`)
  const source = await startReference({ handle: HANDLE, password: 'source-password' })
  hooks.track(source)
  const sourceSide: Side = { url: source.url, token: source.accessJwt }
  const t0 = performance.now()
  let lastReport = t0
  const seedTimes = await seedLivedInRepo(sourceSide, source.did, cfg.records, 200, (done) => {
    if (performance.now() - lastReport < 30_000) return
    lastReport = performance.now()
    hooks.progress(`import: seeded ${done.toLocaleString('en')} / ${cfg.records.toLocaleString('en')}`)
  })
  const seedS = (performance.now() - t0) / 1000
  const res = await fetch(`${source.url}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(source.did)}`)
  if (res.status !== 200) throw new Error(`getRepo on the source: ${res.status} ${await res.text()}`)
  const car = new Uint8Array(await res.arrayBuffer())
  hooks.progress(`import: seeded in ${seedS.toFixed(0)} s; CAR ${(car.byteLength / 2 ** 20).toFixed(1)} MiB, ${countCarBlocks(car)} blocks`)
  return { source, sourceSide, car, seedS, seedTimes }
}

/** Runs the import rounds and adds the figures to `report` (rows labelled with the record count). */
export const importPhase = async (report: Report, cfg: ImportConfig, hooks: Hooks): Promise<void> => {
  const { source, sourceSide, car, seedS, seedTimes } = await prepareSource(cfg, hooks)
  const replay = await replayStaging(car)
  const runs: Pair<Measured<ImportRun>[]> = { ours: [], ref: [] }
  const checks: Pair<AfterImport[]> = { ours: [], ref: [] }
  const errorLogs: string[] = []
  try {
    for (let round = 0; round < cfg.rounds; round++) {
      hooks.progress(`import: round ${round + 1}/${cfg.rounds}, starting fresh targets`)
      const targets = await both((name): Promise<Server> => {
        const start =
          name === 'ours'
            ? startOurs({ handle: HANDLE, vars: { PDS_DID: source.did, PLC_URL: source.plcUrl } })
            : startReference({ handle: 'target.test', plcUrl: source.plcUrl, env: { maxImportSize: REF_MAX_IMPORT } })
        return start.then((s) => (hooks.track(s), s))
      })
      try {
        const sessions = await both((name) =>
          createAccountThere({ did: source.did, handle: HANDLE, email: EMAIL, newPassword: targets[name].password, from: sourceSide, to: targets[name].url }),
        )
        const order: ServerName[] = round % 2 === 0 ? ['ours', 'ref'] : ['ref', 'ours']
        for (const name of order) {
          const m = await measure(targets[name], () => importOnce(targets[name], sessions[name].session, car))
          runs[name].push(m)
          hooks.progress(`import: ${name} ${m.result.status === 200 ? 'imported' : `FAILED (${m.result.status})`} in ${(m.result.ms / 1000).toFixed(1)} s`)
          checks[name].push(await afterImport(sessions[name].session))
        }
      } finally {
        errorLogs.push(...parseErrorLogs(targets.ours.log()))
        // As the e2e harness does: E2E_LOGS=1 prints everything wrangler said (a Worker exception's stack shows there).
        if (process.env.E2E_LOGS === '1') console.error(`--- wrangler output (ours, round ${round + 1}) ---\n${targets.ours.log()}`)
        await Promise.allSettled([targets.ours.stop(), targets.ref.stop()])
      }
    }
  } finally {
    await source.stop()
  }
  addFigures(report, cfg, { car, seedS, seedTimes, replay, runs, checks, errorLogs })
}

interface Collected {
  car: Uint8Array
  seedS: number
  seedTimes: number[]
  replay: StagingReplay
  runs: Pair<Measured<ImportRun>[]>
  checks: Pair<AfterImport[]>
  errorLogs: string[]
}

const MIB = 1024

/** Our request log's D1 figures for each import call, once when every call said the same. */
const d1Calls = (logs: (RequestLog | undefined)[]): string => {
  const text = logs.map((l) => (l ? `${l.d1.queries} round trips, ${l.d1.rowsRead.toLocaleString('en')} rows read, ${l.d1.rowsWritten.toLocaleString('en')} written (HTTP ${l.status})` : 'no log line'))
  return new Set(text).size === 1 && text.length > 1 ? `each of the ${text.length} calls ${text[0]}` : text.join('; ')
}

const addFigures = (report: Report, cfg: ImportConfig, c: Collected): void => {
  const n = cfg.records.toLocaleString('en')
  const ok = (name: ServerName) => c.runs[name].filter((r) => r.result.status === 200)
  const med = (name: ServerName, f: (r: Measured<ImportRun>) => number) => median(ok(name).map(f))
  const each = (name: ServerName, f: (r: Measured<ImportRun>) => number) => c.runs[name].map((r) => fmt(f(r))).join(', ')
  const logs = c.runs.ours.map((r) => r.logs.find((l) => l.path === IMPORT_PATH))
  const d1 = (f: (l: NonNullable<(typeof logs)[number]>) => number) => median(logs.filter((l) => l !== undefined).map((l) => f(l!)))
  report.add(`importRepo ${n} records, median`, 'ms', med('ours', (r) => r.result.ms), med('ref', (r) => r.result.ms), 'lower')
  report.add(`importRepo ${n}: server CPU, median`, 'ms', med('ours', (r) => r.cpu), med('ref', (r) => r.cpu), 'lower')
  report.add(`importRepo ${n}: server peak RSS, median`, 'MiB', med('ours', (r) => r.result.rss.all.peakKib / MIB), med('ref', (r) => r.result.rss.all.peakKib / MIB), 'lower')
  report.add(
    `importRepo ${n}: server peak RSS increase, median`,
    'MiB',
    med('ours', (r) => (r.result.rss.all.peakKib - r.result.rss.all.baselineKib) / MIB),
    med('ref', (r) => (r.result.rss.all.peakKib - r.result.rss.all.baselineKib) / MIB),
    'lower',
  )
  report.add(`importRepo ${n}: D1 round trips`, 'trips', d1((l) => l.d1.queries), Number.NaN)
  report.add(`importRepo ${n}: D1 rows read`, 'rows', d1((l) => l.d1.rowsRead), Number.NaN)
  report.add(`importRepo ${n}: D1 rows written`, 'rows', d1((l) => l.d1.rowsWritten), Number.NaN)
  const failed = (name: ServerName) => c.runs[name].length - ok(name).length
  report.add(`importRepo ${n}: failed imports`, 'imports', failed('ours'), failed('ref'), 'no-ratio')
  const records = (name: ServerName) => median(c.checks[name].map((x) => x.indexedRecords))
  report.add(`importRepo ${n}: records indexed after (sanity)`, 'records', records('ours'), records('ref'))

  const blocks = countCarBlocks(c.car)
  report.note(
    `importRepo of one CAR: ${fmt(c.car.byteLength / 2 ** 20)} MiB, ${blocks.toLocaleString('en')} blocks, ${n} records ` +
      `(3 in 4 posts of 100-300 characters, some with facets, link and quote embeds or replies; likes; follows), seeded on a source reference PDS in ` +
      `${c.seedS.toFixed(0)} s (applyWrites x 200: first/median/last ${fmt(c.seedTimes[0])}/${fmt(median(c.seedTimes))}/${fmt(c.seedTimes.at(-1)!)} ms). ` +
      `${cfg.rounds} round(s), each on two fresh targets (ours for the DID, a second reference PDS on the same PLC directory, its maxImportSize raised), ` +
      `alternating which imports first. Times (ms), ours: ${each('ours', (r) => r.result.ms)}; reference: ${each('ref', (r) => r.result.ms)}. ` +
      `CPU (ms), ours: ${each('ours', (r) => r.cpu)} (${Object.keys(c.runs.ours[0]?.groups ?? {}).map((g) => `${g} ${fmt(median(c.runs.ours.map((r) => r.groups[g])))}`).join(', ')}); ` +
      `reference: ${each('ref', (r) => r.cpu)}.`,
  )
  report.note(
    `importRepo ${n}, peak RSS (MiB, sampled every 10 ms; baseline just before): ours all workerd ${each('ours', (r) => r.result.rss.all.peakKib / MIB)} ` +
      `(baseline ${each('ours', (r) => r.result.rss.all.baselineKib / MIB)}), of which the user-worker workerd ${each('ours', (r) => r.result.rss.main.peakKib / MIB)} ` +
      `(baseline ${each('ours', (r) => r.result.rss.main.baselineKib / MIB)}); reference node ${each('ref', (r) => r.result.rss.all.peakKib / MIB)} ` +
      `(baseline ${each('ref', (r) => r.result.rss.all.baselineKib / MIB)}).`,
  )
  const phases = c.runs.ours.map((r) => r.result.timeline).filter((t): t is ImportTimeline => t !== undefined)
  const ph = (f: (t: ImportTimeline) => number) => phases.map((t) => fmt(f(t))).join(', ')
  const ms = c.runs.ours.map((r) => r.result.ms)
  report.note(
    `importRepo ${n}, ours by phase (ms per round, from when each atomic D1 batch became visible in the local D1 file, polled every 25 ms): ` +
      `to the first staged batch ${ph((t) => t.firstStaged)}; staging (streaming, checking and writing blocks) ${ph((t) => t.lastStaged - t.firstStaged)}; ` +
      `commit check, DID resolution and the walk batch ${ph((t) => t.walked - t.lastStaged)}; completeness check and the final batch ${ph((t) => t.finished - t.walked)}; ` +
      `to the response ${phases.map((t, i) => fmt(ms[i] - t.finished)).join(', ')}. ` +
      `Staging, replayed with the Worker's own code on this CAR: ${c.replay.batches} batches, ${c.replay.statements} INSERT statements ` +
      `(at most ${c.replay.maxStatementsPerBatch} per batch, the largest ${c.replay.maxStatementBytes.toLocaleString('en')} bytes; D1 allows 100,000), ` +
      `${fmt(c.replay.sqlBytes / 2 ** 20)} MiB of SQL for ${fmt(c.car.byteLength / 2 ** 20)} MiB of CAR; ` +
      `${c.replay.maxParams === 0 ? 'no staging statement binds a parameter' : `at most ${c.replay.maxParams} bound parameters in a staging statement`}. ` +
      "Locally the D1 simulator's SQLite runs inside the user-worker workerd, so ours' CPU and RSS above include work production D1 does on its own machines " +
      '(they bound the Worker\'s own share from above). ' +
      `D1 per importRepo call (request log): ${d1Calls(logs)}.`,
  )
  for (const name of ['ours', 'ref'] as const) {
    for (const r of c.runs[name].filter((x) => x.result.status !== 200)) {
      report.note(`FAILED importRepo ${n} on ${name === 'ours' ? 'ours' : 'the reference'}: HTTP ${r.result.status} after ${fmt(r.result.ms)} ms: \`${r.result.error.slice(0, 600)}\``)
    }
  }
  if (c.errorLogs.length > 0) report.note(`Our Worker logged: ${[...new Set(c.errorLogs)].slice(0, 3).map((l) => `\`${l.slice(0, 1500)}\``).join(' ')}`)
  const commits = new Set([...c.checks.ours, ...c.checks.ref].map((x) => x.repoCommit))
  if (commits.size > 1) report.note(`WARNING: the targets answered different repo commits after the import: ${[...commits].join(', ')}.`)
}

/** Standalone: runs only this phase and writes its own section of bench/results.md. */
export const runImportStandalone = (cfg: ImportConfig, quick: boolean): Promise<void> =>
  runStandalone(
    {
      key: `import-${cfg.records}`,
      title: `importRepo, ${cfg.records.toLocaleString('en')} records (standalone run)`,
      run: `bun bench/import.ts --records ${cfg.records} --rounds ${cfg.rounds}${quick ? ' --quick' : ''}`,
    },
    ({ report, progress, track }) => importPhase(report, cfg, { progress, track }),
  )

/** `--records N` / `--import-records N` and `--rounds R` / `--import-rounds R`, over the defaults. */
export const importConfigFrom = (argv: string[], quick: boolean): ImportConfig => {
  const flag = (names: string[]): number | undefined => {
    const at = argv.findIndex((a) => names.includes(a))
    const value = at >= 0 ? Number(argv[at + 1]) : Number.NaN
    return Number.isInteger(value) && value > 0 ? value : undefined
  }
  const base = quick ? IMPORT_CONFIG.quick : IMPORT_CONFIG.full
  const records = flag(['--records', '--import-records']) ?? base.records
  // A 100,000-record import is long: one round unless asked for more.
  return { records, rounds: flag(['--rounds', '--import-rounds']) ?? (records > 20_000 ? 1 : base.rounds) }
}

if (import.meta.main) {
  const quick = process.argv.includes('--quick')
  try {
    await runImportStandalone(importConfigFrom(process.argv, quick), quick)
  } catch (err) {
    console.error(`import bench failed: ${(err as Error)?.stack ?? err}`)
    process.exitCode = 1
  }
  process.exit(process.exitCode ?? 0)
}
