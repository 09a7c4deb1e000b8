/**
 * A phase run alone (`bun bench/run.ts --only <phase>`, `bun bench/import.ts`):
 * on servers of its own, stopped on every way out, into its own section of
 * bench/results.md.
 */
import { join } from 'node:path'
import { machine } from './proc'
import { gitDescribe, Report, writeSection } from './report'
import type { Server } from './servers'

export interface StandaloneRun {
  report: Report
  progress(msg: string): void
  /** A server to stop when the run ends, however it ends. */
  track(server: Server): void
}

export const runStandalone = async (section: { key: string; title: string; run: string }, body: (run: StandaloneRun) => Promise<void>): Promise<void> => {
  const t0 = performance.now()
  const progress = (msg: string): void => console.error(`[bench ${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${msg}`)
  const servers: Server[] = []
  const stopAll = () => Promise.allSettled(servers.map((s) => s.stop()))
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void stopAll().finally(() => process.exit(130)))
  const report = new Report()
  const date = new Date().toISOString()
  const host = machine()
  try {
    await body({ report, progress, track: (s) => servers.push(s) })
  } finally {
    await stopAll()
  }
  const elapsedS = (performance.now() - t0) / 1000
  const text = report.section(section.title, { date, machine: host, code: gitDescribe(), run: section.run, elapsedS })
  writeSection(join(import.meta.dir, 'results.md'), section.key, text)
  console.log(text)
  progress(`done in ${elapsedS.toFixed(0)} s; section written to bench/results.md`)
}
