// Installs what the real-AppView suite needs on first use, so a fresh clone or a CI runner can start it
// without manual steps: Postgres and Redis from Debian (apt-get) and test/appview's own node_modules
// (@atproto/dev-env with @atproto/bsky, @atproto/bsync, @atproto/pds). Idempotent; once installed it only
// stats a few files.
//
//   node test/appview/ensure-installed.mjs            (CLI; exit code 0 when ready)
//   import { ensureInstalled, appviewNode, postgresBin } from './ensure-installed.mjs'
//
// Why this is more than `npm install` (the same traps test/peers/ensure-installed.mjs documents):
// - npm must itself run under Node >= 22, or it silently resolves much older @atproto/* releases.
// - @atproto/pds (the second PDS, and imported by dev-env) needs better-sqlite3, a native addon that has
//   to compile here, and the machine's npmrc points node-gyp at Node 20 headers (`nodedir=/usr`). We
//   install with --ignore-scripts and rebuild it against headers matching the Node 22 that runs it.
// - The stamp file records what the install was made for, so a package.json change, another Node or a
//   hand-run `npm install` that rebuilt the addon with the wrong headers is noticed and repaired.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const APPVIEW_DIR = path.dirname(fileURLToPath(import.meta.url))
const REPO_ROOT = path.resolve(APPVIEW_DIR, '..', '..')
const NODE_MODULES = path.join(APPVIEW_DIR, 'node_modules')
const STAMP = path.join(NODE_MODULES, '.appview-install-stamp.json')
const ADDON = path.join(NODE_MODULES, 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node')

/** Path of a Node >= 22 binary to run the AppView with (and to run npm under). */
export function appviewNode() {
  if (process.env.APPVIEW_NODE) return process.env.APPVIEW_NODE
  // Bun reports a Node version too, but cannot host @atproto/pds or dev-env reliably.
  const major = Number(process.versions.node.split('.')[0])
  if (!process.versions.bun && major >= 22) return process.execPath
  const bundled = path.join(REPO_ROOT, 'node_modules', 'node', 'bin', 'node')
  if (fs.existsSync(bundled)) return bundled
  throw new Error('test/appview needs Node >= 22: install the root devDependencies or set APPVIEW_NODE')
}

/** Directory holding initdb/postgres of the newest installed Postgres, or null. */
export function postgresBin() {
  const base = '/usr/lib/postgresql'
  const versions = fs.existsSync(base) ? fs.readdirSync(base).filter((v) => /^\d+$/.test(v)) : []
  versions.sort((a, b) => Number(b) - Number(a))
  const found = versions.map((v) => path.join(base, v, 'bin')).find((d) => fs.existsSync(path.join(d, 'initdb')))
  return found ?? null
}

/** Absolute path of redis-server, or null. */
export function redisServerBin() {
  return ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => fs.existsSync(p)) ?? null
}

// Everything the npm install depends on; any change forces the slow path.
function currentStamp(node) {
  const hash = createHash('sha256')
  for (const f of ['package.json', 'package-lock.json']) {
    const p = path.join(APPVIEW_DIR, f)
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

const systemReady = () => postgresBin() !== null && redisServerBin() !== null
const npmReady = (node) => {
  try {
    return fs.readFileSync(STAMP, 'utf8') === currentStamp(node)
  } catch {
    return false
  }
}

/** Resolves once Postgres, Redis and test/appview/node_modules are usable. Fast when nothing is to do. */
export async function ensureInstalled({ quiet = false } = {}) {
  const node = appviewNode()
  if (systemReady() && npmReady(node)) return { node, installed: false }
  // Several processes may call this at once on a fresh clone: serialise on a lock directory.
  const lock = path.join(os.tmpdir(), `appview-install-${createHash('sha1').update(APPVIEW_DIR).digest('hex').slice(0, 12)}.lock`)
  const deadline = Date.now() + 20 * 60_000
  for (;;) {
    try {
      fs.mkdirSync(lock)
      break
    } catch (err) {
      if (err.code !== 'EEXIST') throw err
      // A lock older than 20 minutes belongs to a crashed installer.
      if (Date.now() - fs.statSync(lock).mtimeMs > 20 * 60_000) fs.rmSync(lock, { recursive: true, force: true })
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`)
      await new Promise((r) => setTimeout(r, 500))
    }
  }
  try {
    const log = (msg) => quiet || console.error(`[test/appview] ${msg}`)
    // Child output goes to our stderr (never stdout: appview.mjs prints its JSON line there).
    const run = (cmd, args, { extraEnv = {}, capture = false, cwd = APPVIEW_DIR } = {}) => {
      const env = { ...process.env, PATH: `${path.dirname(node)}${path.delimiter}${process.env.PATH}`, ...extraEnv }
      const r = spawnSync(cmd, args, {
        cwd,
        env,
        stdio: ['ignore', capture || quiet ? 'pipe' : 2, quiet ? 'pipe' : 2],
        encoding: 'utf8',
      })
      if (r.status !== 0) {
        throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal ?? r.error})\n${r.stderr ?? ''}`.trim())
      }
      return r.stdout
    }
    if (!systemReady()) installSystemPackages(run, log)
    if (!npmReady(node)) installNpm(node, run, log) // another process may have finished meanwhile
  } finally {
    fs.rmSync(lock, { recursive: true, force: true })
  }
  return { node, installed: true }
}

function installSystemPackages(run, log) {
  if (process.getuid?.() !== 0) {
    throw new Error('Postgres or redis-server is missing: run `apt-get install -y postgresql redis-server` as root')
  }
  const t0 = Date.now()
  log('installing postgresql and redis-server from Debian (first use, ~1 min)')
  // The package lists may be missing or stale on a fresh machine; `update` first costs a few seconds.
  const apt = { extraEnv: { DEBIAN_FRONTEND: 'noninteractive' }, cwd: '/' }
  run('apt-get', ['update', '-qq'], apt)
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'postgresql', 'redis-server'], apt)
  if (!systemReady()) throw new Error('postgresql/redis-server installed but their binaries were not found')
  log(`system packages ready in ${Math.round((Date.now() - t0) / 1000)} s`)
}

function installNpm(node, run, log) {
  const t0 = Date.now()
  log('installing dependencies (first use; takes a few minutes)')
  run('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'])

  // Prove the addons load in the Node that will run them, not just that they are on disk.
  const loads = (probe) => spawnSync(node, ['-e', probe], { cwd: APPVIEW_DIR, stdio: 'ignore' }).status === 0
  const sqlite = "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()"
  if (!loads(sqlite)) reuseSiblingAddon(log)
  if (!loads(sqlite)) {
    const nodedir = findNodeHeaders(node, run, log)
    log(`building better-sqlite3 against ${nodedir} (about a minute)`)
    // An npm_config_* variable beats the user's npmrc, and node-gyp reads it as --nodedir.
    run('npm', ['rebuild', 'better-sqlite3', '--loglevel=error'], { extraEnv: { npm_config_nodedir: nodedir } })
    if (!loads(sqlite)) throw new Error('better-sqlite3 still fails to load after the rebuild')
  }
  // sharp (the AppView's image pipeline) ships prebuilt binaries as npm packages: no build step.
  if (!loads("require('sharp')")) throw new Error('sharp fails to load (its @img/sharp-* package is missing?)')
  fs.writeFileSync(STAMP, currentStamp(node))
  log(`npm dependencies ready in ${Math.round((Date.now() - t0) / 1000)} s`)
}

/**
 * test/peers (installed first by `npm test`) builds the same better-sqlite3 release for the same Node:
 * copying its addon saves a one-to-two-minute compile. The caller still proves the copy loads, and
 * builds its own when it does not (another version, or no sibling install).
 */
function reuseSiblingAddon(log) {
  const version = (dir) => {
    try {
      return JSON.parse(fs.readFileSync(path.join(dir, 'better-sqlite3', 'package.json'), 'utf8')).version
    } catch {
      return null
    }
  }
  const ours = version(NODE_MODULES)
  const sibling = path.join(REPO_ROOT, 'test', 'peers', 'node_modules')
  const addon = path.join(sibling, 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node')
  if (!ours || version(sibling) !== ours || !fs.existsSync(addon)) return
  log(`reusing the better-sqlite3 ${ours} addon built for test/peers`)
  fs.mkdirSync(path.dirname(ADDON), { recursive: true })
  fs.copyFileSync(addon, ADDON)
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
