// Installs what the real-AppView suite needs on first use, so a fresh clone or a CI runner can start it
// without manual steps: Postgres and Redis from Debian (apt-get) and test/appview's own node_modules
// (@atproto/dev-env with @atproto/bsky, @atproto/bsync, @atproto/pds). Idempotent; once installed it only
// stats a few files. The npm side, and why it is more than `npm install`: ../shared/peer-install.mjs.
//
//   node test/appview/ensure-installed.mjs            (CLI; exit code 0 when ready)
//   import { ensureInstalled, appviewNode, postgresBin } from './ensure-installed.mjs'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { ensurePeerPackage, findNode22, runInstallCli } from '../shared/peer-install.mjs'

export const APPVIEW_DIR = path.dirname(fileURLToPath(import.meta.url))

/** Path of a Node >= 22 binary to run the AppView with (and to run npm under); $APPVIEW_NODE overrides. */
export function appviewNode() {
  return findNode22({ envVar: 'APPVIEW_NODE', who: 'test/appview' })
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

const systemReady = () => postgresBin() !== null && redisServerBin() !== null

/** Resolves once Postgres, Redis and test/appview/node_modules are usable. Fast when nothing is to do. */
export function ensureInstalled({ quiet = false } = {}) {
  return ensurePeerPackage({
    dir: APPVIEW_DIR,
    name: 'appview',
    node: appviewNode(),
    lockMinutes: 20,
    systemReady,
    installSystem: installSystemPackages,
    // test/peers (installed first by `npm test`) builds the same better-sqlite3 for the same Node.
    reuseAddonFrom: path.join(APPVIEW_DIR, '..', 'peers'),
    // sharp (the AppView's image pipeline) ships prebuilt binaries as npm packages: no build step.
    probes: [["require('sharp')", 'sharp fails to load (its @img/sharp-* package is missing?)']],
    quiet,
  })
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

runInstallCli(import.meta.url, ensureInstalled)
