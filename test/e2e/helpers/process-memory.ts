/**
 * Resident memory of a `wrangler dev` server as the kernel counts it: the
 * wrangler (Node) process listening for a port plus every process below it
 * (workerd, esbuild), each one's `VmRSS` from /proc/<pid>/status; or only its
 * workerd processes, the runtime itself. Linux only,
 * which is what the e2e suites run on. Used to check that what the server
 * holds for its clients stays bounded, whichever process holds it.
 */
import { readdirSync, readFileSync } from 'node:fs'

const MiB = 1024 * 1024

const read = (path: string): string | null => {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return null // the process went away meanwhile
  }
}

const pids = (): number[] =>
  readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)

/** Parent pid from /proc/<pid>/stat (the command name, field 2, may hold spaces: skip past its ')'). */
const parentOf = (pid: number): number | null => {
  const stat = read(`/proc/${pid}/stat`)
  if (!stat) return null
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[1])
}

/** The wrangler dev process serving `port` (its command line says `dev ... --port <port>`). */
export const findWranglerPid = (port: number): number => {
  for (const pid of pids()) {
    const args = (read(`/proc/${pid}/cmdline`) ?? '').split('\0')
    const at = args.indexOf('--port')
    if (args.some((a) => a.endsWith('wrangler.js')) && args.includes('dev') && at >= 0 && args[at + 1] === String(port)) return pid
  }
  throw new Error(`no wrangler dev process for port ${port}`)
}

/** `root` and all its descendants. */
export const processTree = (root: number): number[] => {
  const children = new Map<number, number[]>()
  for (const pid of pids()) {
    const parent = parentOf(pid)
    if (parent !== null) children.set(parent, [...(children.get(parent) ?? []), pid])
  }
  const tree: number[] = []
  const walk = (pid: number): void => {
    tree.push(pid)
    for (const child of children.get(pid) ?? []) walk(child)
  }
  walk(root)
  return tree
}

/** VmRSS of one process in bytes (0 once it is gone). */
export const rssOf = (pid: number): number => {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(read(`/proc/${pid}/status`) ?? '')?.[1]
  return kb ? Number(kb) * 1024 : 0
}

/** The program a process runs (its executable's base name and, for node, the script's). */
export const processName = (pid: number): string => {
  const args = (read(`/proc/${pid}/cmdline`) ?? '').split('\0').filter(Boolean)
  const base = (path: string | undefined): string => path?.split('/').pop() ?? '?'
  const script = args.slice(1).find((a) => a.endsWith('.js') || a.endsWith('.mjs'))
  return base(args[0]) === 'node' && script ? `node ${base(script)}` : base(args[0])
}

/** Summed VmRSS of the tree under `root`, in bytes. */
export const treeRss = (root: number): number => processTree(root).reduce((sum, pid) => sum + rssOf(pid), 0)

/** Summed VmRSS of the workerd processes under `root` (the runtime, without wrangler's Node CLI or esbuild), in bytes. */
export const runtimeRss = (root: number): number =>
  processTree(root)
    .filter((pid) => processName(pid) === 'workerd')
    .reduce((sum, pid) => sum + rssOf(pid), 0)

export const toMiB = (bytes: number): number => Math.round((bytes / MiB) * 10) / 10
