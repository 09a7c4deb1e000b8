/**
 * Linux /proc readings for the benchmark: which processes make up a server,
 * how much CPU they have used (utime + stime, proc(5) fields 14 and 15), and
 * their resident set size (VmRSS), sampled while a request runs.
 *
 * Only processes the benchmark itself started are read; nothing is signalled.
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

/** Clock ticks per second of utime/stime (almost always 100). */
const CLK_TCK = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

export interface ProcStat {
  pid: number
  comm: string
  ppid: number
  /** utime + stime, in ms. */
  cpuMs: number
}

/** Parses /proc/<pid>/stat; null if the process is gone. */
export const readStat = (pid: number): ProcStat | null => {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  // comm is in parentheses and may itself contain spaces or ')'.
  const open = text.indexOf('(')
  const close = text.lastIndexOf(')')
  const comm = text.slice(open + 1, close)
  const rest = text.slice(close + 2).split(' ')
  // rest[0] is field 3 (state): field n is rest[n - 3].
  const ppid = Number(rest[1])
  const ticks = Number(rest[11]) + Number(rest[12])
  return { pid, comm, ppid, cpuMs: (ticks * 1000) / CLK_TCK }
}

const cmdline = (pid: number): string[] => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
  } catch {
    return []
  }
}

const allPids = (): number[] =>
  readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)

/** Every process below `root` (not including it). */
export const descendants = (root: number): ProcStat[] => {
  const stats = allPids()
    .map(readStat)
    .filter((s): s is ProcStat => s !== null)
  const children = new Map<number, ProcStat[]>()
  for (const s of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s])
  const out: ProcStat[] = []
  const queue = [root]
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      out.push(child)
      queue.push(child.pid)
    }
  }
  return out
}

/**
 * The outermost `wrangler.js dev --port <port>` process that is a descendant
 * of this process: the harness spawns it, and other test runs on the machine
 * use other ports.
 */
export const findWranglerPid = (port: number): number => {
  const mine = descendants(process.pid)
  for (const s of mine) {
    const args = cmdline(s.pid)
    const at = args.indexOf('--port')
    if (args.some((a) => a.endsWith('wrangler.js')) && args.includes('dev') && at >= 0 && args[at + 1] === String(port)) {
      return s.pid
    }
  }
  throw new Error(`no wrangler dev --port ${port} among this process's descendants`)
}

/** The workerd processes of one wrangler dev, each with its role (entry proxy or user worker). */
export const workerdOf = (wranglerPid: number): { pid: number; role: string }[] =>
  descendants(wranglerPid)
    .filter((s) => s.comm === 'workerd')
    .map((s) => {
      const args = cmdline(s.pid).join(' ')
      return { pid: s.pid, role: /--inspector-addr/.test(args) ? 'worker' : 'proxy' }
    })

/** Node processes of one wrangler dev (the launcher and its CLI child). */
export const wranglerNodesOf = (wranglerPid: number): number[] => [
  wranglerPid,
  ...descendants(wranglerPid)
    .filter((s) => s.comm === 'node')
    .map((s) => s.pid),
]

/** Total CPU ms used so far by these processes. */
export const cpuMs = (pids: number[]): number => pids.reduce((sum, pid) => sum + (readStat(pid)?.cpuMs ?? 0), 0)

/** VmRSS of these processes together, in KiB. */
export const rssKib = (pids: number[]): number =>
  pids.reduce((sum, pid) => {
    try {
      const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      return sum + (m ? Number(m[1]) : 0)
    } catch {
      return sum
    }
  }, 0)

/** Samples the summed RSS of `pids` every `everyMs` until stopped. */
export const sampleRss = (pids: number[], everyMs = 10): { stop(): { baselineKib: number; peakKib: number; samples: number } } => {
  const baselineKib = rssKib(pids)
  let peakKib = baselineKib
  let samples = 1
  const timer = setInterval(() => {
    peakKib = Math.max(peakKib, rssKib(pids))
    samples++
  }, everyMs)
  return {
    stop: () => {
      clearInterval(timer)
      peakKib = Math.max(peakKib, rssKib(pids))
      return { baselineKib, peakKib, samples: samples + 1 }
    },
  }
}

/** "nproc, CPU model" of this machine, for the results header. */
export const machine = (): string => {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? 'unknown CPU'
  const nproc = (cpuinfo.match(/^processor\s*:/gm) ?? []).length
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  return `${nproc} CPUs, ${model}, load average at start ${load}`
}
