/**
 * Same-run comparison: a workload runs in rounds on both servers, one server
 * at a time, alternating which goes first, so load from elsewhere on the
 * machine falls on both alike. Each run is charged the server's CPU (/proc)
 * and, for ours, the request log lines written meanwhile.
 */
import { cpuMs } from './proc'
import { parseRequestLogs, type RequestLog, type Server, type ServerName } from './servers'
import { median } from './stats'

/** After a measured run: lets trailing async work (firehose pokes, log lines) land in the figures. */
const SETTLE_MS = 300

export const sleep = (ms: number): Promise<void> => new Promise((ok) => setTimeout(ok, ms))

export type Pair<T> = Record<ServerName, T>

export interface Measured<T> {
  result: T
  /** Server CPU ms over the run (all its processes). */
  cpu: number
  /** CPU ms per process group (ours: worker/proxy workerd, wrangler node). */
  groups: Record<string, number>
  /** Our request log lines over the run. */
  logs: RequestLog[]
}

/** Runs `fn` against one server, charging it the CPU and log lines of that span. */
export const measure = async <T>(server: Server, fn: () => Promise<T>): Promise<Measured<T>> => {
  const pids = server.pids()
  const groups = Object.entries(server.breakdown())
  const logStart = server.log().length
  const cpu0 = cpuMs(pids)
  const groups0 = groups.map(([, p]) => cpuMs(p))
  const result = await fn()
  await sleep(SETTLE_MS)
  return {
    result,
    cpu: cpuMs(pids) - cpu0,
    groups: Object.fromEntries(groups.map(([name, p], i) => [name, cpuMs(p) - groups0[i]])),
    logs: parseRequestLogs(server.log().slice(logStart)),
  }
}

/** `rounds` rounds of `fn` on both servers, alternating which goes first. */
export const interleave = async <T>(
  pair: Pair<Server>,
  rounds: number,
  fn: (server: Server, round: number) => Promise<T>,
): Promise<Pair<Measured<T>[]>> => {
  const out: Pair<Measured<T>[]> = { ours: [], ref: [] }
  for (let round = 0; round < rounds; round++) {
    const order: ServerName[] = round % 2 === 0 ? ['ours', 'ref'] : ['ref', 'ours']
    for (const name of order) out[name].push(await measure(pair[name], () => fn(pair[name], round)))
  }
  return out
}

/** Runs `fn` for both servers at once (set-up steps, not measurements). */
export const both = async <T>(fn: (name: ServerName) => Promise<T>): Promise<Pair<T>> => {
  const [ours, ref] = await Promise.all([fn('ours'), fn('ref')])
  return { ours, ref }
}

/** Per-process-group CPU per unit, median over runs. */
export const groupsPer = (runs: Measured<unknown>[], units: (i: number) => number): Record<string, number> => {
  return Object.fromEntries(Object.keys(runs[0].groups).map((g) => [g, median(runs.map((r, i) => r.groups[g] / units(i)))]))
}
