// Installs a test peer package (test/peers, test/appview: npm packages of their own, kept out of the root
// dependency tree) on first use, so a fresh clone or a CI runner starts the peers without manual steps.
// Idempotent; once installed it only stats a few files. Only Node builtins here: on a fresh clone this
// module runs before any node_modules exists.
//
//   import { ensurePeerPackage, findNode22, runInstallCli } from '../shared/peer-install.mjs'
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
//   rebuilds the addon with the wrong headers), another Node or a package.json change is noticed and
//   repaired.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { isMainModule } from './peer-process.mjs'

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const SQLITE_PROBE = "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()"
const addonOf = (nodeModules) => path.join(nodeModules, 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node')

/**
 * Path of a Node >= 22 binary to run a peer with (and to run npm under): `$<envVar>`, this process when it
 * is such a Node, or the Node 22 the root project ships as the npm package `node`.
 */
export function findNode22({ envVar, who }) {
  if (process.env[envVar]) return process.env[envVar]
  // Bun reports a Node version too, but is no supported host for the better-sqlite3 addon.
  const major = Number(process.versions.node.split('.')[0])
  if (!process.versions.bun && major >= 22) return process.execPath
  const bundled = path.join(REPO_ROOT, 'node_modules', 'node', 'bin', 'node')
  if (fs.existsSync(bundled)) return bundled
  throw new Error(`${who} needs Node >= 22: install the root devDependencies or set ${envVar}`)
}

/**
 * Resolves once `dir/node_modules` is usable by `node` (and `systemReady()` holds). Fast when nothing is
 * to do.
 * @param {object} opts
 * @param {string} opts.dir  the package directory (holds package.json and package-lock.json)
 * @param {string} opts.name  short name: log prefix `[test/<name>]`, stamp and lock file names
 * @param {string} opts.node  from findNode22
 * @param {number} [opts.lockMinutes=15]  how long to wait for another installer; older locks are stale
 * @param {() => boolean} [opts.systemReady]  whether what npm cannot install is there
 * @param {(run, log) => void} [opts.installSystem]  installs it (called under the lock when not ready)
 * @param {string} [opts.reuseAddonFrom]  another peer package whose better-sqlite3 build may be copied
 * @param {[string, string][]} [opts.probes]  more `[code, error message]` that must run under `node`
 * @param {boolean} [opts.quiet]
 * @returns {Promise<{node: string, installed: boolean}>}
 */
export async function ensurePeerPackage(opts) {
  const { dir, name, node, lockMinutes = 15, systemReady = () => true, quiet = false } = opts
  const stamp = path.join(dir, 'node_modules', `.${name}-install-stamp.json`)
  const npmReady = () => {
    try {
      return fs.readFileSync(stamp, 'utf8') === currentStamp(dir, node)
    } catch {
      return false
    }
  }
  if (systemReady() && npmReady()) return { node, installed: false }
  // Several test files may call this at once on a fresh clone: serialise on a lock directory.
  const lock = path.join(os.tmpdir(), `${name}-install-${createHash('sha1').update(dir).digest('hex').slice(0, 12)}.lock`)
  const deadline = Date.now() + lockMinutes * 60_000
  for (;;) {
    try {
      fs.mkdirSync(lock)
      break
    } catch (err) {
      if (err.code !== 'EEXIST') throw err
      // A lock older than that belongs to a crashed installer.
      if (Date.now() - fs.statSync(lock).mtimeMs > lockMinutes * 60_000) fs.rmSync(lock, { recursive: true, force: true })
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`)
      await new Promise((r) => setTimeout(r, 500))
    }
  }
  try {
    const log = (msg) => quiet || console.error(`[test/${name}] ${msg}`)
    const run = commandRunner(node, dir, quiet)
    // Another process may have finished meanwhile: check again under the lock.
    if (!systemReady()) opts.installSystem(run, log)
    if (!npmReady()) {
      installNpm({ ...opts, run, log })
      fs.writeFileSync(stamp, currentStamp(dir, node))
    }
  } finally {
    fs.rmSync(lock, { recursive: true, force: true })
  }
  return { node, installed: true }
}

/** The CLI of an ensure-installed.mjs: when it is the script Node started, runs `ensure`; exit 1 on failure. */
export function runInstallCli(importMetaUrl, ensure) {
  if (!isMainModule(importMetaUrl)) return
  ensure().catch((err) => {
    console.error(err.message ?? err)
    process.exit(1)
  })
}

// Everything the npm install depends on; any change forces the slow path.
function currentStamp(dir, node) {
  const hash = createHash('sha256')
  for (const f of ['package.json', 'package-lock.json']) {
    const p = path.join(dir, f)
    if (fs.existsSync(p)) hash.update(fs.readFileSync(p))
  }
  const nodeStat = fs.statSync(node)
  const addonPath = addonOf(path.join(dir, 'node_modules'))
  const addon = fs.existsSync(addonPath) ? fs.statSync(addonPath) : null
  return JSON.stringify({
    deps: hash.digest('hex'),
    node: [fs.realpathSync(node), nodeStat.size, nodeStat.mtimeMs],
    addon: addon && [addon.size, addon.mtimeMs],
  })
}

// Runs a command to completion, throwing with its stderr on failure. npm's shebang is
// `#!/usr/bin/env node`: putting Node 22 first on PATH makes npm run under it. Child output goes to our
// stderr (never stdout: the peers' launchers print their JSON line there).
function commandRunner(node, dir, quiet) {
  const env = { ...process.env, PATH: `${path.dirname(node)}${path.delimiter}${process.env.PATH}` }
  return (cmd, args, { extraEnv = {}, capture = false, cwd = dir } = {}) => {
    const r = spawnSync(cmd, args, {
      cwd,
      env: { ...env, ...extraEnv },
      stdio: ['ignore', capture || quiet ? 'pipe' : 2, quiet ? 'pipe' : 2],
      encoding: 'utf8',
    })
    if (r.status !== 0) {
      throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal ?? r.error})\n${r.stderr ?? ''}`.trim())
    }
    return r.stdout
  }
}

function installNpm({ dir, node, reuseAddonFrom, probes = [], run, log }) {
  const t0 = Date.now()
  log('installing dependencies (first use; takes a few minutes)')
  run('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'])

  // Prove the addons load in the Node that will run the peer, not just that they compiled.
  const loads = (code) => spawnSync(node, ['-e', code], { cwd: dir, stdio: 'ignore' }).status === 0
  if (!loads(SQLITE_PROBE) && reuseAddonFrom) reuseAddon(reuseAddonFrom, path.join(dir, 'node_modules'), log)
  if (!loads(SQLITE_PROBE)) {
    const nodedir = findNodeHeaders(node, path.join(dir, 'node_modules', '.cache'), run, log)
    log(`building better-sqlite3 against ${nodedir} (a minute or two)`)
    // An npm_config_* variable beats the user's npmrc, and node-gyp reads it as --nodedir.
    run('npm', ['rebuild', 'better-sqlite3', '--loglevel=error'], { extraEnv: { npm_config_nodedir: nodedir } })
    if (!loads(SQLITE_PROBE)) throw new Error('better-sqlite3 still fails to load after the rebuild')
  }
  for (const [code, error] of probes) if (!loads(code)) throw new Error(error)
  log(`npm dependencies ready in ${Math.round((Date.now() - t0) / 1000)} s`)
}

/**
 * Another peer package (installed first by `npm test`) may have built the same better-sqlite3 release for
 * the same Node: copying its addon saves a one-to-two-minute compile. The caller still proves the copy
 * loads, and builds its own when it does not (another version, or no sibling install).
 */
function reuseAddon(fromDir, nodeModules, log) {
  const version = (dir) => {
    try {
      return JSON.parse(fs.readFileSync(path.join(dir, 'better-sqlite3', 'package.json'), 'utf8')).version
    } catch {
      return null
    }
  }
  const sibling = path.join(fromDir, 'node_modules')
  const ours = version(nodeModules)
  if (!ours || version(sibling) !== ours || !fs.existsSync(addonOf(sibling))) return
  log(`reusing the better-sqlite3 ${ours} addon built in ${path.relative(REPO_ROOT, fromDir)}`)
  fs.mkdirSync(path.dirname(addonOf(nodeModules)), { recursive: true })
  fs.copyFileSync(addonOf(sibling), addonOf(nodeModules))
}

// node-gyp wants a directory holding include/node/node.h for exactly this Node's ABI.
function findNodeHeaders(node, cacheDir, run, log) {
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
  const cache = path.join(cacheDir, `node-headers-${version}`)
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
