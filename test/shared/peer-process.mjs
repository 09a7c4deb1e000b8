// Running a test peer (test/peers' reference PDS, test/appview's AppView) as a Node 22 child of a test
// process that cannot host it (Bun, Node 20): the child prints one JSON line on stdout once it is up,
// and stops when its parent goes away. Plus the loopback helpers both peers' servers need. Only Node
// builtins here: it is imported before a peer's own node_modules exists.
//
//   parent: const peer = await spawnPeer({ name, node, script, env, isReady, timeoutMs })   await peer.stop()
//   child:  if (isMainModule(import.meta.url)) { ...start...; console.log(JSON.stringify(info)); stopOnExitSignals(stop) }
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'

export const HOST = '127.0.0.1'
/** Set in the child's environment by spawnPeer: stop when stdin (a pipe from the parent) closes. */
const STOP_ON_STDIN_EOF = 'PEER_STOP_ON_STDIN_EOF'

/**
 * Binds an express app to IPv4 loopback only. The peers' servers call `app.listen(port)` themselves,
 * which would listen on every interface, so this wraps that one app's listen() to add the host.
 */
export function listenOnLoopback(app) {
  const listen = app.listen.bind(app)
  app.listen = (port, ...rest) => (typeof rest[0] === 'string' ? listen(port, ...rest) : listen(port, HOST, ...rest))
}

/** A loopback TCP port nobody listens on right now (for servers that must know their port up front). */
export async function freePort() {
  const srv = net.createServer()
  await new Promise((resolve, reject) => srv.once('error', reject).listen(0, HOST, resolve))
  const { port } = srv.address()
  await new Promise((resolve) => srv.close(resolve))
  return port
}

/** Whether the module at `importMetaUrl` is the script Node was started with (its CLI entry). */
export function isMainModule(importMetaUrl) {
  return Boolean(process.argv[1]) && fs.realpathSync(process.argv[1]) === fileURLToPath(importMetaUrl)
}

/**
 * Runs `node ...nodeArgs script` and resolves with the parsed first stdout line `isReady` accepts, plus
 * `stop()`. Other lines, before and after, go to stderr prefixed with `[name]`. The child's stdin is a
 * pipe from us: when it closes (we exited or crashed) the child stops too (see stopOnExitSignals), so an
 * aborted test run leaves no orphan holding ports.
 * @param {{name: string, node: string, script: string, nodeArgs?: string[], env?: object,
 *   isReady: (line: string) => boolean, timeoutMs: number}} opts
 */
export async function spawnPeer({ name, node, script, nodeArgs = [], env = {}, isReady, timeoutMs }) {
  const child = spawn(node, [...nodeArgs, script], {
    env: { ...process.env, ...env, [STOP_ON_STDIN_EOF]: '1' },
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const lines = readline.createInterface({ input: child.stdout })
  let timer
  try {
    const info = await Promise.race([
      new Promise((resolve) => {
        let ready = false
        lines.on('line', (l) => {
          if (!ready && isReady(l)) {
            ready = true
            resolve(JSON.parse(l))
          } else process.stderr.write(`[${name}] ${l}\n`)
        })
      }),
      exited.then((code) => Promise.reject(new Error(`${name} exited early (${code})`))),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${name} start timed out`)), timeoutMs)
      }),
    ])
    return {
      ...info,
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
        await exited
      },
    }
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  } finally {
    clearTimeout(timer)
  }
}

/**
 * In the child: on SIGINT, SIGTERM or (when spawned by spawnPeer) stdin EOF, awaits `stop()` once and
 * exits 0; after `forceExitMs` of a stuck stop it exits 1.
 */
export function stopOnExitSignals(stop, { forceExitMs = 20_000 } = {}) {
  let stopping = false
  const shutdown = async () => {
    if (stopping) return
    stopping = true
    setTimeout(() => process.exit(1), forceExitMs).unref()
    await stop()
    process.exit(0)
  }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)
  if (process.env[STOP_ON_STDIN_EOF]) process.stdin.on('end', shutdown).on('close', shutdown).resume()
}
