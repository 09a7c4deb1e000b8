/**
 * Benchmark: our PDS (the Worker under `wrangler dev`) against the official
 * reference PDS (@atproto/pds, Node 22), both on loopback, in the same run.
 *
 *   bun bench/run.ts            full run (300 + 408 writes each, 10,000-record getRepo, firehose x1/x50, 3 x 25 + 3 x 100 MB uploadBlob)
 *   bun bench/run.ts --quick    smaller run, for a quick check (~2.5 min)
 *   bun bench/run.ts --import-records 100000    phase 9 with that many records (default 10,000; 2,000 with --quick)
 *   bun bench/run.ts --only import [--import-records N]    phase 9 alone, into its own section of results.md
 *   bun bench/run.ts --only firehose [--quick]    phase 6 alone (CPU per write with 0, 1 and 50 subscribers), its own section
 *   bun bench/run.ts --only blobs [--quick]    phase 7 alone (uploadBlob at two sizes, the blob probe), its own section
 *
 * Phases, each interleaved between the two servers (bench/rounds.ts):
 * 0 GET / and _health; 1 sequential createRecord; 2 eight concurrent clients;
 * 3 D1 round trips and rows per write (our request log); 4 server CPU per
 * write (/proc); 6 firehose: CPU per write with 0, 1 and 50 subscribers, delivery with 1 and 50; 5 getRepo of
 * a seeded repo with the server's peak RSS (seeding makes repos big); 7
 * uploadBlob of large random binaries (two sizes) with throughput and peak
 * RSS, and the blob probe (bench/blobs.ts); 9
 * importRepo of a seeded account's CAR on fresh servers (bench/import.ts, last).
 * Progress goes to stderr; the table to stdout and bench/results.md.
 */
import { join } from 'node:path'
import { blobPhase } from './blobs'
import { firehosePhase, runFirehoseStandalone } from './firehose'
import { downloadRepo, type RepoDownload } from './getrepo'
import { importConfigFrom, importPhase, runImportStandalone } from './import'
import { machine } from './proc'
import { gitDescribe, Report } from './report'
import { runStandalone } from './standalone'
import { both, groupsPer, interleave, type Measured, sleep } from './rounds'
import { apportioned, isolateCpuPerWrite, PERF_V8_FLAGS, perfAvailable, removePerfMaps } from './isolate-cpu'
import { agentFor, getLatencies, parseErrorLogs, type ReferenceServer, type RequestLog, type Server, type ServerName, startOurs, startReference } from './servers'
import { proxiedTimelines, STUB_APPVIEW_DID, startAppViewStub } from './proxy'
import { fmt, median, percentile, sum } from './stats'
import { concurrentWrites, seedRecords, sequentialWrites, type WriteRun } from './writes'

const QUICK = process.argv.includes('--quick')
const ONLY = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined
const IMPORT = importConfigFrom(process.argv, QUICK)
const CONFIG = QUICK
  ? { proxied: 60, pings: 30, warmup: 10, seqRounds: 2, seqWrites: 50, concRounds: 2, clients: 8, perClient: 5, records: 2_000, downloads: 3, fhWrites: 40, fhBlock: 20, fanout: 50, blobMB: [5, 20], blobRounds: 1 }
  : { proxied: 200, pings: 60, warmup: 20, seqRounds: 3, seqWrites: 100, concRounds: 3, clients: 8, perClient: 17, records: 10_000, downloads: 3, fhWrites: 100, fhBlock: 25, fanout: 50, blobMB: [25, 100], blobRounds: 3 }
const SEED_BATCH = 200
const ISOLATE_ROUNDS = 3
const ISOLATE_WRITES = 50
const RESULTS = join(import.meta.dir, 'results.md')
const CREATE = '/xrpc/com.atproto.repo.createRecord'

const t0 = performance.now()
const progress = (msg: string): void => {
  console.error(`[bench ${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${msg}`)
}

// Stop everything we started, once, on every way out.
const servers: Server[] = []
let stopping: Promise<void> | null = null
const stopAll = (): Promise<void> => {
  stopping ??= Promise.allSettled(servers.map((s) => s.stop())).then(() => undefined)
  return stopping
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    progress(`${signal}: stopping both servers`)
    void stopAll().finally(() => process.exit(130))
  })
}

const writeFigures = (runs: Measured<WriteRun>[]) => {
  const writes = (i: number) => runs[i].result.latencies.length
  const latencies = runs.flatMap((r) => r.result.latencies)
  return {
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    perSecond: median(runs.map((r, i) => writes(i) / (r.result.wallMs / 1000))),
    cpuPerWrite: median(runs.map((r, i) => r.cpu / writes(i))),
    groupsPerWrite: groupsPer(runs, writes),
  }
}

/** D1 figures per request of `path`, from our request log lines. */
const d1PerRequest = (logs: RequestLog[], path: string) => {
  const lines = logs.filter((l) => l.path === path && l.status === 200)
  const n = lines.length || Number.NaN
  const histogram = new Map<number, number>()
  for (const l of lines) histogram.set(l.d1.queries, (histogram.get(l.d1.queries) ?? 0) + 1)
  return {
    lines: lines.length,
    queries: sum(lines.map((l) => l.d1.queries)) / n,
    rowsRead: sum(lines.map((l) => l.d1.rowsRead)) / n,
    rowsWritten: sum(lines.map((l) => l.d1.rowsWritten)) / n,
    histogram: [...histogram].sort((a, b) => a[0] - b[0]).map(([q, c]) => `${q} trips x${c}`).join(', '),
  }
}

const groupText = (groups: Record<string, number>): string =>
  Object.entries(groups)
    .map(([g, v]) => `${g} ${fmt(v)}`)
    .join(', ')

const main = async (): Promise<void> => {
  const report = new Report()
  const date = new Date().toISOString()
  const host = machine()
  const code = gitDescribe()
  progress(`starting both servers (${QUICK ? 'quick' : 'full'} run) on ${host}`)
  const appView = startAppViewStub()
  process.on('exit', () => appView.stop())
  const target = { url: appView.url, did: STUB_APPVIEW_DID }
  // V8's map of compiled code, so phase 5's perf samples name our scripts (bench/isolate-cpu.ts).
  const sampleIsolate = perfAvailable()
  if (sampleIsolate) Object.assign(process.env, PERF_V8_FLAGS)
  let reference: ReferenceServer | undefined
  const pair = await both(async (name) => {
    const server = await (name === 'ours' ? startOurs({ appView: target }) : (reference = await startReference({ appView: target })))
    servers.push(server)
    return server
  })
  for (const key of Object.keys(PERF_V8_FLAGS)) delete process.env[key]
  const ourPids = pair.ours.pids()
  process.on('exit', () => removePerfMaps(ourPids))
  progress(`ours ${pair.ours.url} (workerd pids ${pair.ours.pids().join(',')}), reference ${pair.ref.url} (pid ${pair.ref.pids()})`)
  const agents = await both((name) => agentFor(pair[name]))
  await both((name) => sequentialWrites(agents[name], pair[name].did, CONFIG.warmup))

  // 0: the fixed cost of one request through each stack (GET / touches no database; _health runs `select 1`).
  for (const [path, label] of [['/robots.txt', 'GET /robots.txt p50 (no database: fixed cost)'], ['/xrpc/_health', 'GET /xrpc/_health p50']]) {
    const pings = await interleave(pair, 2, (s) => getLatencies(s, path, CONFIG.pings / 2))
    const p50 = (name: ServerName) => percentile(pings[name].flatMap((r) => r.result), 50)
    report.add(label, 'ms', p50('ours'), p50('ref'), 'lower')
  }

  // 8: forwarding to an AppView (a loopback stand-in answering at once), caught up and behind.
  for (const behind of [false, true]) {
    if (behind) {
      // The AppView has indexed up to now; the next three posts are only local.
      await both(async (name) => {
        const head = await agents[name].com.atproto.sync.getLatestCommit({ did: pair[name].did })
        appView.setIndexedRev(pair[name].did, head.data.rev)
        for (let i = 0; i < 3; i++) await agents[name].post({ text: `not indexed yet ${i}`, createdAt: new Date().toISOString() })
      })
    }
    const what = behind ? 'AppView 3 posts behind (added locally)' : 'AppView caught up'
    progress(`phase 8: ${CONFIG.proxied} proxied getTimeline, ${what}`)
    const runs = await interleave(pair, 2, (s) => proxiedTimelines(agents[s.name], CONFIG.proxied / 2, behind))
    const fig = (name: ServerName) => {
      const latencies = runs[name].flatMap((r) => r.result)
      return { p50: percentile(latencies, 50), p99: percentile(latencies, 99), cpu: sum(runs[name].map((r) => r.cpu)) / latencies.length }
    }
    const [ours, ref] = [fig('ours'), fig('ref')]
    report.add(`proxied getTimeline p50, ${what}`, 'ms', ours.p50, ref.p50, 'lower')
    report.add(`proxied getTimeline p99, ${what}`, 'ms', ours.p99, ref.p99, 'lower')
    report.add(`server CPU per proxied getTimeline, ${what}`, 'ms', ours.cpu, ref.cpu, 'lower')
    if (behind) {
      const d1 = d1PerRequest(runs.ours.flatMap((r) => r.logs), '/xrpc/app.bsky.feed.getTimeline')
      report.note(`Proxied getTimeline with the AppView behind, ours: ${fmt(d1.queries)} D1 round trips and ${fmt(d1.rowsRead)} rows read per call (${d1.histogram}).`)
    }
  }
  for (const name of ['ours', 'ref'] as const) appView.setIndexedRev(pair[name].did, null)

  // 1, 3, 4: sequential writes, D1 per write, CPU per write.
  const writesLogStart = pair.ours.log().length
  progress(`phase 1: ${CONFIG.seqRounds} x ${CONFIG.seqWrites} sequential createRecord`)
  const seq = await interleave(pair, CONFIG.seqRounds, (s) => sequentialWrites(agents[s.name], s.did, CONFIG.seqWrites))
  const seqFig = { ours: writeFigures(seq.ours), ref: writeFigures(seq.ref) }
  report.add('sequential createRecord p50', 'ms', seqFig.ours.p50, seqFig.ref.p50, 'lower')
  report.add('sequential createRecord p99', 'ms', seqFig.ours.p99, seqFig.ref.p99, 'lower')
  report.add('sequential throughput', 'writes/s', seqFig.ours.perSecond, seqFig.ref.perSecond, 'higher')

  // 2: concurrent clients.
  progress(`phase 2: ${CONFIG.concRounds} x ${CONFIG.clients} clients x ${CONFIG.perClient} createRecord`)
  const clientAgents = await both((name) => Promise.all(Array.from({ length: CONFIG.clients }, () => agentFor(pair[name]))))
  const conc = await interleave(pair, CONFIG.concRounds, (s) => concurrentWrites(clientAgents[s.name], s.did, CONFIG.perClient))
  const concFig = { ours: writeFigures(conc.ours), ref: writeFigures(conc.ref) }
  report.add(`${CONFIG.clients} clients createRecord p50`, 'ms', concFig.ours.p50, concFig.ref.p50, 'lower')
  report.add(`${CONFIG.clients} clients createRecord p99`, 'ms', concFig.ours.p99, concFig.ref.p99, 'lower')
  report.add(`${CONFIG.clients} clients total throughput`, 'writes/s', concFig.ours.perSecond, concFig.ref.perSecond, 'higher')

  const failed = (name: ServerName) => [...seq[name], ...conc[name]].flatMap((r) => r.result.errors)
  report.add('failed writes (phases 1-2)', 'writes', failed('ours').length, failed('ref').length, 'no-ratio')
  for (const name of ['ours', 'ref'] as const) {
    const errors = failed(name)
    if (errors.length === 0) continue
    const counts = new Map<string, number>()
    for (const e of errors) counts.set(e, (counts.get(e) ?? 0) + 1)
    const loggedAll = name === 'ours' ? parseErrorLogs(pair.ours.log().slice(writesLogStart)) : []
    const logged = [...new Set(loggedAll)].slice(0, 2).map((l) => `${loggedAll.filter((x) => x === l).length} x ${l}`)
    report.note(
      `FAILED writes on ${name === 'ours' ? 'ours' : 'the reference'}: ${[...counts].map(([e, c]) => `${c} x "${e}"`).join(', ')} (not timed).` +
        (logged.length ? ` Logged by the Worker: ${logged.map((l) => `\`${l.slice(0, 700)}\``).join(' ')}` : ''),
    )
  }

  if (failed('ours').length > 0 && pair.ours.restart) {
    // A failing Worker would fail every later phase too: start it again (same state) so they still measure.
    progress(`ours failed ${failed('ours').length} writes: restarting it before the next phases`)
    await pair.ours.restart()
    await sequentialWrites(agents.ours, pair.ours.did, 5)
    report.note('Ours was restarted (same state) after phase 2 because its writes were failing; later phases ran on the fresh process.')
  }

  const d1 = d1PerRequest(seq.ours.flatMap((r) => r.logs), CREATE)
  const d1Conc = d1PerRequest(conc.ours.flatMap((r) => r.logs), CREATE)
  report.add('D1 round trips per write (phase 1)', 'trips', d1.queries, Number.NaN)
  report.add('D1 rows read per write (phase 1)', 'rows', d1.rowsRead, Number.NaN)
  report.add('D1 rows written per write (phase 1)', 'rows', d1.rowsWritten, Number.NaN)
  report.add('server CPU per write (phase 1)', 'ms', seqFig.ours.cpuPerWrite, seqFig.ref.cpuPerWrite, 'lower')
  report.add('server CPU per write (phase 2)', 'ms', concFig.ours.cpuPerWrite, concFig.ref.cpuPerWrite, 'lower')
  const serverMs = percentile(
    seq.ours.flatMap((r) => r.logs).filter((l) => l.path === CREATE).map((l) => l.ms),
    50,
  )
  report.note(
    `Ours, phase 1: ${d1.lines} createRecord log lines for ${CONFIG.seqRounds * CONFIG.seqWrites} writes; D1 round trips: ${d1.histogram}. ` +
      `Phase 2: ${fmt(d1Conc.queries)} trips, ${fmt(d1Conc.rowsRead)} rows read, ${fmt(d1Conc.rowsWritten)} rows written per write (${d1Conc.histogram}). ` +
      'The request log counts only the Worker request; the FirehoseHub DO reads the event log after each commit on its own D1 client (not counted). ' +
      `The log's own duration p50 is ${fmt(serverMs)} ms (workerd's clock only advances on I/O, so it leaves out CPU-bound time).`,
  )
  report.note(
    `CPU per write by process, phase 1 (ms): ours ${groupText(seqFig.ours.groupsPerWrite)}; reference ${groupText(seqFig.ref.groupsPerWrite)}. ` +
      "The table charges ours all its workerd processes (user worker + wrangler's entry proxy), not wrangler's node (log printing), which would not exist in production. " +
      `Both log every request, as deployed: ours one JSON line per request (printed by wrangler), the reference with LOG_ENABLED=true as its installer's pds.env sets it (pino, to a file; ${reference?.logLines() ?? 0} lines by the end of phase 2). ` +
      "Ours runs without wrangler dev's local observability collector and data explorer (X_LOCAL_OBSERVABILITY/X_LOCAL_EXPLORER=false): development tools that do not exist on Cloudflare, which tail every request and wrap the Durable Object.",
  )

  // 6: firehose CPU per write and delivery (before seeding, so both repos are still small).
  await firehosePhase(report, pair, agents, { ...CONFIG, sampleIsolate }, progress)

  // 5: seed, then getRepo.
  progress(`phase 5: seeding ${CONFIG.records} records (applyWrites x ${SEED_BATCH}) on both`)
  const seeds = await interleave(pair, Math.ceil(CONFIG.records / (SEED_BATCH * 5)), (s, round) =>
    seedRecords(agents[s.name], s.did, Math.min(SEED_BATCH * 5, CONFIG.records - round * SEED_BATCH * 5), SEED_BATCH),
  )
  const seedTimes = (name: ServerName) => seeds[name].flatMap((r) => r.result)
  const seedD1 = d1PerRequest(seeds.ours.flatMap((r) => r.logs), '/xrpc/com.atproto.repo.applyWrites')
  report.add(`applyWrites of ${SEED_BATCH} creates, median`, 'ms', median(seedTimes('ours')), median(seedTimes('ref')), 'lower')
  report.note(
    `Seeding, ours: per ${SEED_BATCH}-create applyWrites ${fmt(seedD1.queries)} D1 round trips, ${fmt(seedD1.rowsRead)} rows read, ` +
      `${fmt(seedD1.rowsWritten)} rows written (${seedD1.lines} calls); first/last call ${fmt(seedTimes('ours')[0])}/${fmt(seedTimes('ours').at(-1)!)} ms ` +
      `(reference ${fmt(seedTimes('ref')[0])}/${fmt(seedTimes('ref').at(-1)!)} ms). Server CPU per call: ours ${fmt(median(seeds.ours.map((r) => r.cpu / r.result.length)))} ms, ` +
      `reference ${fmt(median(seeds.ref.map((r) => r.cpu / r.result.length)))} ms.`,
  )
  await sleep(1_000)
  progress(`phase 5: getRepo x ${CONFIG.downloads} on both`)
  const repos = await interleave(pair, CONFIG.downloads, (s) => downloadRepo(s.url, s.did, s.pids()))
  const pick = (name: ServerName, f: (d: RepoDownload) => number) => median(repos[name].map((r) => f(r.result)))
  const each = (name: ServerName, f: (d: RepoDownload) => number) => repos[name].map((r) => fmt(f(r.result))).join(', ')
  report.add(`getRepo (${CONFIG.records.toLocaleString('en')} + earlier records), median`, 'ms', pick('ours', (d) => d.ms), pick('ref', (d) => d.ms), 'lower')
  report.add('getRepo time to first byte, median', 'ms', pick('ours', (d) => d.firstByteMs), pick('ref', (d) => d.firstByteMs), 'lower')
  report.add('getRepo server CPU, median', 'ms', median(repos.ours.map((r) => r.cpu)), median(repos.ref.map((r) => r.cpu)), 'lower')
  report.add('getRepo server peak RSS increase, median', 'MiB', pick('ours', (d) => d.rssPeakDeltaKib / 1024), pick('ref', (d) => d.rssPeakDeltaKib / 1024), 'lower')
  report.add('getRepo CAR size (sanity)', 'MiB', pick('ours', (d) => d.bytes / 2 ** 20), pick('ref', (d) => d.bytes / 2 ** 20))
  report.add('getRepo CAR blocks (sanity)', 'blocks', pick('ours', (d) => d.blocks), pick('ref', (d) => d.blocks))
  const sizeRatio = pick('ours', (d) => d.bytes) / pick('ref', (d) => d.bytes)
  if (Math.abs(sizeRatio - 1) > 0.1) report.note(`WARNING: the CARs differ in size by more than 10% (ours/ref ${fmt(sizeRatio)}): the repos are not alike.`)
  report.note(
    `getRepo times (ms), ours: ${each('ours', (d) => d.ms)}; reference: ${each('ref', (d) => d.ms)}. ` +
      `Peak RSS increase (MiB, sampled every 10 ms), ours: ${each('ours', (d) => d.rssPeakDeltaKib / 1024)}; reference: ${each('ref', (d) => d.rssPeakDeltaKib / 1024)}. ` +
      `Body chunks received, ours: ${each('ours', (d) => d.chunks)} (~${fmt(pick('ours', (d) => d.bytes / d.chunks))} bytes each); reference: ${each('ref', (d) => d.chunks)}. ` +
      `Server CPU by process (ms), ours: ${groupText(groupsPer(repos.ours, () => 1))}.`,
  )

  // 5b: the CPU our isolate's JavaScript spends on a warm createRecord on this repo (what the Free plan limits).
  if (sampleIsolate) {
    progress(`phase 5b: our isolate's CPU per createRecord, ${ISOLATE_ROUNDS} x ${ISOLATE_WRITES} writes sampled with perf`)
    const cpu = await isolateCpuPerWrite(pair.ours, agents.ours, ISOLATE_ROUNDS, ISOLATE_WRITES)
    report.add(`our isolate's JavaScript CPU per createRecord, ${CONFIG.records.toLocaleString('en')}-record repo (perf), median`, 'ms', median(cpu.oursPerWrite), Number.NaN)
    report.add(`  the same with V8's unattributable promise jobs shared by JavaScript share (perf)`, 'ms', apportioned(cpu), Number.NaN)
    report.note(
      `Phase 5b (bench/isolate-cpu.ts): perf sampled the user-worker workerd on CPU time during ${ISOLATE_ROUNDS} rounds of ${ISOLATE_WRITES} sequential createRecord; ` +
        `a sample is ours when its innermost JavaScript frame is our bundle or a runtime module in our isolate (the D1 binding's client). ` +
        `Per round (ms): ${cpu.oursPerWrite.map((x) => fmt(x)).join(', ')}. The whole process per write by owner (ms): ` +
        `${Object.entries(cpu.byOwner).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')} (d1: the D1 simulator's JavaScript and SQLite; dev: wrangler's entry and collector Workers; promises: V8 running promise jobs with no script's frame on the stack, any isolate's, so ours is at most 'ours' plus all of it; runtime: no JavaScript on the stack, e.g. sockets and HTTP; gc: collection with no JavaScript frame).`,
    )
  } else {
    report.note('Phase 5b skipped: perf is not installed, so our isolate\'s CPU per write was not sampled.')
  }

  // 7: uploadBlob of large random binaries (last, so its memory churn cannot touch the other phases).
  await blobPhase(report, pair, { ours: agents.ours.session!.accessJwt, ref: agents.ref.session!.accessJwt }, { sizesMB: CONFIG.blobMB, rounds: CONFIG.blobRounds }, progress)

  // 9: importRepo, on servers of its own (the main pair stops first, so the machine is quieter).
  progress('phase 9: stopping the main pair; importRepo on fresh servers')
  await Promise.allSettled([pair.ours.stop(), pair.ref.stop()])
  await importPhase(report, IMPORT, { progress, track: (s) => servers.push(s) })

  const elapsedS = (performance.now() - t0) / 1000
  const markdown = report.markdown({ date, machine: host, code, quick: QUICK, config: JSON.stringify({ ...CONFIG, import: IMPORT }), elapsedS })
  report.write(RESULTS, markdown)
  console.log(markdown)
  progress(`done in ${elapsedS.toFixed(0)} s; written to ${RESULTS}`)
}

/** Phase 7 alone, on a fresh pair, into its own section of results.md. */
const runBlobsStandalone = (): Promise<void> =>
  runStandalone(
    { key: 'blobs', title: `uploadBlob, ${CONFIG.blobMB.join(' and ')} MB (standalone run)`, run: `bun bench/run.ts --only blobs${QUICK ? ' --quick' : ''}` },
    async ({ report, progress, track }) => {
      progress(`starting both servers (phase 7 alone, ${QUICK ? 'quick' : 'full'} sizes)`)
      const pair = await both(async (name) => {
        const server = await (name === 'ours' ? startOurs() : startReference())
        track(server)
        return server
      })
      const agents = await both((name) => agentFor(pair[name]))
      await both((name) => sequentialWrites(agents[name], pair[name].did, 5))
      await blobPhase(report, pair, { ours: agents.ours.session!.accessJwt, ref: agents.ref.session!.accessJwt }, { sizesMB: CONFIG.blobMB, rounds: CONFIG.blobRounds }, progress)
    },
  )

try {
  if (ONLY === 'import') await runImportStandalone(IMPORT, QUICK)
  else if (ONLY === 'firehose') await runFirehoseStandalone(CONFIG, QUICK)
  else if (ONLY === 'blobs') await runBlobsStandalone()
  else if (ONLY !== undefined) throw new Error(`--only ${ONLY}: only "import", "firehose" and "blobs" run alone`)
  else await main()
} catch (err) {
  // After Ctrl-C the in-flight request fails as its server goes away: not worth a stack trace.
  progress(stopping ? 'interrupted' : `failed: ${(err as Error)?.stack ?? err}`)
  for (const server of servers) {
    for (const line of parseErrorLogs(server.log()).slice(-3)) progress(`${server.name} logged: ${line.slice(0, 1500)}`)
  }
  process.exitCode = stopping ? 130 : 1
} finally {
  progress('stopping both servers')
  await stopAll()
}
process.exit(process.exitCode ?? 0)
