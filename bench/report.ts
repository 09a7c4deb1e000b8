/**
 * The benchmark's output: one markdown table (ours, reference, ours/ref) plus
 * notes, printed and written to bench/results.md.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { fmt } from './stats'

export interface Row {
  label: string
  unit: string
  ours: number
  /** NaN when the reference has no such figure. */
  ref: number
  /** Which direction is better, shown next to the ratio; 'no-ratio' for signed quantities. */
  better?: 'lower' | 'higher' | 'no-ratio'
}

export class Report {
  readonly rows: Row[] = []
  readonly notes: string[] = []

  add(label: string, unit: string, ours: number, ref: number, better?: Row['better']): void {
    this.rows.push({ label, unit, ours, ref, better })
  }

  note(text: string): void {
    this.notes.push(text)
  }

  table(): string {
    const lines = ['| metric | unit | ours | reference | ours/ref |', '|---|---|--:|--:|--:|']
    for (const r of this.rows) {
      // A ratio of a negative delay (see the firehose rows) means nothing.
      const ratio = r.ours > 0 && r.ref > 0 && r.better !== 'no-ratio' ? r.ours / r.ref : Number.NaN
      const hint = r.better && Number.isFinite(ratio) ? ` (${r.better} is better)` : ''
      const ratioText = Number.isFinite(ratio) ? `${ratio.toFixed(2)}x${hint}` : '-'
      lines.push(`| ${r.label} | ${r.unit} | ${fmt(r.ours)} | ${Number.isFinite(r.ref) ? fmt(r.ref) : '-'} | ${ratioText} |`)
    }
    return lines.join('\n')
  }

  markdown(header: { date: string; machine: string; code: string; quick: boolean; config: string; elapsedS: number }): string {
    return [
      '# Benchmark: our PDS (wrangler dev) vs the reference PDS (@atproto/pds)',
      '',
      `- Date: ${header.date}`,
      `- Machine: ${header.machine}`,
      `- Code: ${header.code} (our Worker is built from a copy of the sources taken at the start)`,
      `- Run: \`bun bench/run.ts${header.quick ? ' --quick' : ''}\` (${header.config}); ${header.elapsedS.toFixed(0)} s in total`,
      '- Both servers ran on this machine at the same time, on loopback, and were measured in the same run,',
      '  interleaved round by round (alternating which goes first). Absolute figures depend on the machine and',
      '  its load; the **ratios** (ours/reference) are the figures to compare between runs.',
      '- Latencies are client-side (request sent to response parsed, official @atproto/api client).',
      '  p50/p99 pool every sample of every round; throughput and CPU are medians of the per-round values.',
      '',
      this.table(),
      '',
      '## Notes',
      '',
      ...this.notes.map((n) => `- ${n}`),
      '',
    ].join('\n')
  }

  /** The same table and notes as a section of their own (a phase run alone, e.g. `bun bench/import.ts`). */
  section(title: string, header: { date: string; machine: string; code: string; run: string; elapsedS: number }): string {
    return [
      `## ${title}`,
      '',
      `- Date: ${header.date}`,
      `- Machine: ${header.machine}`,
      `- Code: ${header.code}`,
      `- Run: \`${header.run}\`; ${header.elapsedS.toFixed(0)} s in total. Both servers measured in the same run; compare the **ratios**.`,
      '',
      this.table(),
      '',
      ...this.notes.map((n) => `- ${n}`),
    ].join('\n')
  }

  /** Writes the full run's results, keeping the sections standalone runs left in the file. */
  write(path: string, markdown: string): void {
    const kept = existsSync(path) ? [...readFileSync(path, 'utf8').matchAll(SECTION)].map((m) => m[0]) : []
    writeFileSync(path, kept.length ? `${markdown.trimEnd()}\n\n${kept.join('\n\n')}\n` : markdown)
  }
}

/** A standalone run's section: `<!-- standalone:KEY -->` ... `<!-- /standalone:KEY -->`. */
const SECTION = /<!-- standalone:([\w-]+) -->[\s\S]*?<!-- \/standalone:\1 -->/g

/** Puts `text` in results file `path` as section `key`, replacing that section's last run. */
export const writeSection = (path: string, key: string, text: string): void => {
  const block = `<!-- standalone:${key} -->\n${text.trimEnd()}\n<!-- /standalone:${key} -->`
  const current = existsSync(path) ? readFileSync(path, 'utf8') : ''
  const marker = new RegExp(`<!-- standalone:${key} -->[\\s\\S]*?<!-- /standalone:${key} -->`)
  writeFileSync(path, marker.test(current) ? current.replace(marker, () => block) : `${current.trimEnd()}\n\n${block}\n`)
}

/** The commit the working tree is at, and whether it has uncommitted changes to tracked files. */
export const gitDescribe = (): string => {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
    // results.md is what a run writes (a standalone section, say): not a change to the code measured.
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', '.', ':!bench/results.md'], { encoding: 'utf8' }).trim()
    return dirty ? `${head} + uncommitted changes` : head
  } catch {
    return 'unknown'
  }
}
