/**
 * Where OUR Worker spends its JavaScript time: a sampling CPU profile of the
 * user worker's isolate (the Worker and its Durable Objects), taken through
 * the DevTools inspector `wrangler dev` exposes, during sequential writes and
 * during one getRepo. Prints self time by function and by bundled module
 * (esbuild's `// node_modules/...` / `// src/...` markers in the bundle).
 *
 *   bun bench/profile.ts [--records 2000] [--writes 100] [--subscribers 50]
 *
 * With `--subscribers N`, N firehose subscribers (no cursor, live) are
 * connected during the writes, so the profile shows what they add (the
 * FirehoseHub runs in the same isolate).
 *
 * Not part of the comparison (the profiler slows the isolate down): use it to
 * explain a figure of bench/run.ts. "(program)" is native runtime work
 * outside JavaScript; D1's SQLite runs in another isolate and is not sampled.
 */
import { readFileSync } from 'node:fs'
import WebSocket from 'ws'
import { Fanout } from './firehose'
import { findWranglerPid } from './proc'
import { agentFor, startOurs } from './servers'
import { seedRecords, sequentialWrites } from './writes'

const arg = (name: string, fallback: number): number => {
  const at = process.argv.indexOf(`--${name}`)
  return at >= 0 ? Number(process.argv[at + 1]) : fallback
}
const RECORDS = arg('records', 2_000)
const WRITES = arg('writes', 100)
const SUBSCRIBERS = arg('subscribers', 0)

interface ProfileNode {
  id: number
  callFrame: { functionName: string; scriptId: string; lineNumber: number }
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

/** A minimal DevTools protocol client. */
const connect = async (url: string) => {
  const ws = new WebSocket(url)
  await new Promise((ok, fail) => ws.once('open', ok).once('error', fail))
  let next = 0
  const pending = new Map<number, (result: any) => void>()
  ws.on('message', (data) => {
    const msg = JSON.parse(String(data))
    if (msg.id !== undefined) pending.get(msg.id)?.(msg.result ?? { error: msg.error })
  })
  const call = (method: string, params: object = {}): Promise<any> =>
    new Promise((ok) => {
      const id = ++next
      pending.set(id, ok)
      ws.send(JSON.stringify({ id, method, params }))
    })
  return { call, close: () => ws.close() }
}

/** For each line of a bundled script, the module esbuild put there. */
const moduleIndex = (source: string): string[] => {
  let current = '(bundle)'
  return source.split('\n').map((line) => {
    // Paths are relative to the build dir (bench/servers.ts builds from a temp copy, so `../../work/main/node_modules/...`).
    const m = /^\/\/ (\S*(?:node_modules|src)\/\S+\.[cm]?[jt]s)$/.exec(line)
    if (m) {
      const pkg = /.*node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(m[1])
      current = pkg ? `node_modules/${pkg[1]}` : m[1].slice(m[1].lastIndexOf('src/'))
    }
    return current
  })
}

const summarise = async (title: string, profile: Profile, sourceOf: (scriptId: string) => Promise<string[] | null>): Promise<void> => {
  const self = new Map<number, number>()
  profile.samples.forEach((node, i) => self.set(node, (self.get(node) ?? 0) + (profile.timeDeltas[i] ?? 0)))
  const parent = new Map<number, ProfileNode>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node)
  const nameOf = async (node: ProfileNode): Promise<[fn: string, module: string]> => {
    const lines = node.callFrame.scriptId !== '0' ? await sourceOf(node.callFrame.scriptId) : null
    const module = lines?.[node.callFrame.lineNumber] ?? '(native)'
    return [`${node.callFrame.functionName || '(anonymous)'}  [${module}]`, module]
  }
  const byFunction = new Map<string, number>()
  const byModule = new Map<string, number>()
  /** Self time of each function by the chain of its 3 nearest callers. */
  const callers = new Map<string, Map<string, number>>()
  for (const node of profile.nodes) {
    const us = self.get(node.id) ?? 0
    if (us === 0) continue
    const [fn, module] = await nameOf(node)
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us)
    byModule.set(module, (byModule.get(module) ?? 0) + us)
    const chain: string[] = []
    for (let p = parent.get(node.id); p && chain.length < 3; p = parent.get(p.id)) chain.push((await nameOf(p))[0])
    const byChain = callers.get(fn) ?? new Map<string, number>()
    byChain.set(chain.join(' < '), (byChain.get(chain.join(' < ')) ?? 0) + us)
    callers.set(fn, byChain)
  }
  const total = [...byFunction.values()].reduce((a, b) => a + b, 0)
  const top = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => `${(us / 1000).toFixed(1).padStart(9)} ms  ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`)
      .join('\n')
  const hot = [...byFunction]
    .filter(([fn]) => !fn.endsWith('[(native)]'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, 8)
    .map(([fn]) => `${fn}\n${top(callers.get(fn)!, 3).replace(/^/gm, '    ')}`)
    .join('\n')
  console.log(
    `\n## ${title}: ${(total / 1000).toFixed(0)} ms sampled\n\nBy module (self time):\n${top(byModule, 15)}\n\n` +
      `By function (self time):\n${top(byFunction, 25)}\n\nCallers of the hottest JavaScript functions:\n${hot}`,
  )
}

const server = await startOurs()
try {
  const agent = await agentFor(server)
  console.error(`seeding ${RECORDS} records and warming up...`)
  await seedRecords(agent, server.did, RECORDS, 200)
  await sequentialWrites(agent, server.did, 20)

  const wrangler = readFileSync(`/proc/${findWranglerPid(Number(new URL(server.url).port))}/cmdline`, 'utf8').split('\0')
  const inspectorPort = wrangler[wrangler.indexOf('--inspector-port') + 1]
  const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()) as { webSocketDebuggerUrl: string }[]
  const devtools = await connect(targets[0].webSocketDebuggerUrl)
  const sources = new Map<string, string[] | null>()
  const sourceOf = async (scriptId: string): Promise<string[] | null> => {
    if (!sources.has(scriptId)) {
      const res = await devtools.call('Debugger.getScriptSource', { scriptId })
      sources.set(scriptId, typeof res.scriptSource === 'string' ? moduleIndex(res.scriptSource) : null)
    }
    return sources.get(scriptId)!
  }
  await devtools.call('Debugger.enable')
  await devtools.call('Profiler.enable')
  await devtools.call('Profiler.setSamplingInterval', { interval: 500 })

  const fanout = SUBSCRIBERS > 0 ? await Fanout.open(server.url, SUBSCRIBERS) : null
  await fanout?.warmUp(agent, server.did)
  const before = fanout?.counts()
  await devtools.call('Profiler.start')
  await sequentialWrites(agent, server.did, WRITES)
  // Let the last deliveries land inside the profile.
  if (fanout) await new Promise((ok) => setTimeout(ok, 300))
  const writesProfile = (await devtools.call('Profiler.stop')).profile
  const got = fanout?.counts().map((n, i) => n - before![i])
  fanout?.close()
  const subscribed = fanout ? ` with ${SUBSCRIBERS} firehose subscribers (frames received per subscriber: min ${Math.min(...got!)}, max ${Math.max(...got!)})` : ''
  await summarise(`${WRITES} sequential createRecord${subscribed}`, writesProfile, sourceOf)

  await devtools.call('Profiler.start')
  const res = await fetch(`${server.url}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(server.did)}`)
  const bytes = (await res.arrayBuffer()).byteLength
  await summarise(`getRepo (${RECORDS + WRITES + 21} records, ${bytes} bytes)`, (await devtools.call('Profiler.stop')).profile, sourceOf)
  await devtools.call('Debugger.disable')
  devtools.close()
} finally {
  await server.stop()
}
process.exit(0)
