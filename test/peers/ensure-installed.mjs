// Installs test/peers' own node_modules on first use, so a fresh clone or a CI runner can start the
// reference PDS without manual steps. Idempotent; the already-installed path only stats a few files.
//
//   node test/peers/ensure-installed.mjs            (CLI; exit code 0 when ready)
//   import { ensureInstalled, peersNode } from './ensure-installed.mjs'
//
// Why this is more than `npm install`:
// - npm must itself run under Node >= 22, or it silently resolves much older @atproto/* releases.
// - @atproto/pds needs better-sqlite3, a native addon. No prebuilt binary can be downloaded here (no
//   internet but the npm registry), so it compiles from source, and the machine's global npmrc sets
//   `nodedir=/usr` (Node 20 headers): the build then "succeeds" but fails to load under Node 22
//   (NODE_MODULE_VERSION mismatch). We therefore install with --ignore-scripts and rebuild it against
//   headers that match the Node 22 binary. Those headers come from that Node's own install prefix or,
//   failing that, from the npm package `node-<platform>-<arch>` (the registry is reachable).
// - The stamp file records what the install was made for, so a later `npm install` by hand (which
//   rebuilds the addon with the wrong headers) or a package.json change is noticed and repaired.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const PEERS_DIR = path.dirname(fileURLToPath(import.meta.url))
const REPO_ROOT = path.resolve(PEERS_DIR, '..', '..')
const NODE_MODULES = path.join(PEERS_DIR, 'node_modules')
const STAMP = path.join(NODE_MODULES, '.peers-install-stamp.json')
const ADDON = path.join(NODE_MODULES, 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node')

/** Path of a Node >= 22 binary to run the peers with (and to run npm under). */
export function peersNode() {
  if (process.env.PEERS_NODE) return process.env.PEERS_NODE
  // Bun reports a Node version too, but is no supported host for the better-sqlite3 addon.
  const major = Number(process.versions.node.split('.')[0])
  if (!process.versions.bun && major >= 22) return process.execPath
  // The root project ships Node 22 as the npm package `node` (see /work/shared/TOOLCHAIN.md).
  const bundled = path.join(REPO_ROOT, 'node_modules', 'node', 'bin', 'node')
  if (fs.existsSync(bundled)) return bundled
  throw new Error('test/peers needs Node >= 22: install the root devDependencies or set PEERS_NODE')
}

// Everything the install depends on; any change forces the slow path.
function currentStamp(node) {
  const hash = createHash('sha256')
  for (const f of ['package.json', 'package-lock.json']) {
    const p = path.join(PEERS_DIR, f)
    if (fs.existsSync(p)) hash.update(fs.readFileSync(p))
  }
  const nodeStat = fs.statSync(node)
  const addon = fs.existsSync(ADDON) ? fs.statSync(ADDON) : null
  return JSON.stringify({
    deps: hash.digest('hex'),
    node: [fs.realpathSync(node), nodeStat.size, nodeStat.mtimeMs],
    addon: addon && [addon.size, addon.mtimeMs],
  })
}

function isInstalled(node) {
  try {
    return fs.readFileSync(STAMP, 'utf8') === currentStamp(node)
  } catch {
    return false
  }
}

/** Resolves once test/peers/node_modules is usable by `peersNode()`. Fast when nothing is to do. */
export async function ensureInstalled({ quiet = false } = {}) {
  const node = peersNode()
  if (isInstalled(node)) return { node, installed: false }
  // Several test files may call this at once on a fresh clone: serialise on a lock directory.
  const lock = path.join(os.tmpdir(), `peers-install-${createHash('sha1').update(PEERS_DIR).digest('hex').slice(0, 12)}.lock`)
  const deadline = Date.now() + 15 * 60_000
  for (;;) {
    try {
      fs.mkdirSync(lock)
      break
    } catch (err) {
      if (err.code !== 'EEXIST') throw err
      // A lock older than 15 minutes belongs to a crashed installer.
      if (Date.now() - fs.statSync(lock).mtimeMs > 15 * 60_000) fs.rmSync(lock, { recursive: true, force: true })
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`)
      await new Promise((r) => setTimeout(r, 500))
    }
  }
  try {
    if (!isInstalled(node)) install(node, quiet) // another process may have finished meanwhile
  } finally {
    fs.rmSync(lock, { recursive: true, force: true })
  }
  return { node, installed: true }
}

function install(node, quiet) {
  const log = (msg) => quiet || console.error(`[test/peers] ${msg}`)
  // npm's shebang is `#!/usr/bin/env node`: putting Node 22 first on PATH makes npm run under it.
  const env = { ...process.env, PATH: `${path.dirname(node)}${path.delimiter}${process.env.PATH}` }
  // Child output goes to our stderr (never stdout: reference-pds.mjs prints its JSON line there).
  const run = (cmd, args, { extraEnv = {}, capture = false } = {}) => {
    const r = spawnSync(cmd, args, {
      cwd: PEERS_DIR,
      env: { ...env, ...extraEnv },
      stdio: ['ignore', capture || quiet ? 'pipe' : 2, quiet ? 'pipe' : 2],
      encoding: 'utf8',
    })
    if (r.status !== 0) {
      throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal ?? r.error})\n${r.stderr ?? ''}`.trim())
    }
    return r.stdout
  }
  const t0 = Date.now()
  log('installing dependencies (first use; takes a few minutes)')
  run('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'])

  // Prove the addon loads in the Node that will run the PDS, not just that it compiled.
  const probe = "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()"
  const loads = () => spawnSync(node, ['-e', probe], { cwd: PEERS_DIR, stdio: 'ignore' }).status === 0
  if (!loads()) {
    const nodedir = findNodeHeaders(node, run, log)
    log(`building better-sqlite3 against ${nodedir} (a few minutes)`)
    // An npm_config_* variable beats the user's npmrc, and node-gyp reads it as --nodedir.
    run('npm', ['rebuild', 'better-sqlite3', '--loglevel=error'], { extraEnv: { npm_config_nodedir: nodedir } })
    if (!loads()) throw new Error('better-sqlite3 still fails to load after the rebuild')
  }
  fs.writeFileSync(STAMP, currentStamp(node))
  log(`ready in ${Math.round((Date.now() - t0) / 1000)} s`)
}

// node-gyp wants a directory holding include/node/node.h for exactly this Node's ABI.
function findNodeHeaders(node, run, log) {
  const version = run(node, ['-p', 'process.versions.node'], { capture: true }).trim()
  const candidates = [
    path.resolve(path.dirname(fs.realpathSync(node)), '..'), // a normal install: <prefix>/bin/node
    path.resolve(path.dirname(node), '..', 'node_modules', `node-${process.platform}-${process.arch}`),
  ]
  const isHeaderDir = (d) => {
    try {
      const h = fs.readFileSync(path.join(d, 'include', 'node', 'node_version.h'), 'utf8')
      const v = ['MAJOR', 'MINOR', 'PATCH'].map((k) => h.match(new RegExp(`define NODE_${k}_VERSION (\\d+)`))?.[1])
      return v.join('.') === version && fs.existsSync(path.join(d, 'include', 'node', 'node.h'))
    } catch {
      return false
    }
  }
  const found = candidates.find(isHeaderDir)
  if (found) return found
  // The npm package of the same Node build carries include/: fetch just that part from the registry.
  const cache = path.join(NODE_MODULES, '.cache', `node-headers-${version}`)
  if (isHeaderDir(cache)) return cache
  const pkg = `node-${process.platform}-${process.arch}@${version}`
  log(`fetching headers from the npm package ${pkg}`)
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'node-headers-'))
  try {
    run('npm', ['pack', pkg, '--pack-destination', tmp, '--loglevel=error'], { capture: true })
    const tgz = fs.readdirSync(tmp).find((f) => f.endsWith('.tgz'))
    run('tar', ['-xzf', path.join(tmp, tgz), '-C', tmp, 'package/include'])
    fs.rmSync(cache, { recursive: true, force: true })
    fs.mkdirSync(cache, { recursive: true })
    fs.renameSync(path.join(tmp, 'package', 'include'), path.join(cache, 'include'))
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  if (!isHeaderDir(cache)) throw new Error(`no usable Node headers in ${pkg}`)
  return cache
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  ensureInstalled().catch((err) => {
    console.error(err.message ?? err)
    process.exit(1)
  })
}
