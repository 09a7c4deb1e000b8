#!/usr/bin/env node
/**
 * `npm test`: every check the project has, in one command.
 *
 *   1. typecheck (tsc --noEmit, strict)
 *      and the bundle size check (wrangler deploy --dry-run; scripts/deploy.mjs)
 *   2. in-runtime tests inside workerd (vitest + @cloudflare/vitest-plugin)
 *   3. end-to-end tests against real `wrangler dev` processes (bun test)
 *
 * It ends with one line `N passed, N failed` (CI reads it) and exits non-zero
 * if anything failed. Extra arguments are passed to bun test (e.g. a file).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const root = new URL('..', import.meta.url).pathname
process.chdir(root)
const bin = (name) => join(root, 'node_modules/.bin', name)
// Make sure every child (vitest, wrangler spawned by tests) gets Node 22.
const env = { ...process.env, PATH: `${join(root, 'node_modules/node/bin')}:${join(root, 'node_modules/.bin')}:${process.env.PATH}` }
const only = process.argv.slice(2)

let passed = 0
let failed = 0
const run = (label, cmd, args) => {
  console.log(`\n=== ${label}: ${[cmd, ...args].join(' ')}`)
  const started = Date.now()
  const result = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], env })
  console.log(`=== ${label}: exit ${result.status} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  return result.status ?? 1
}

if (only.length === 0) {
  // 1. Typecheck counts as one check.
  if (run('typecheck', bin('tsc'), ['--noEmit', '-p', '.']) === 0) passed++
  else failed++

  // The deployable bundle builds and fits the size limits (raw and gzip printed).
  if (run('bundle size', process.execPath, ['scripts/deploy.mjs', '--check-bundle']) === 0) passed++
  else failed++

  // 2. In-runtime tests; counts from vitest's JSON report.
  const out = mkdtempSync(join(tmpdir(), 'vitest-'))
  const report = join(out, 'report.json')
  const status = run('in-runtime tests', bin('vitest'), ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`])
  if (existsSync(report)) {
    const json = JSON.parse(readFileSync(report, 'utf8'))
    passed += json.numPassedTests ?? 0
    failed += json.numFailedTests ?? 0
    if (status !== 0 && !json.numFailedTests) failed++ // a suite that failed to load
  } else if (status !== 0) {
    failed++
  }
  rmSync(out, { recursive: true, force: true })
}

// 3. End-to-end tests; bun prints " N pass" / " N fail" at the end.
if (existsSync(join(root, 'test/peers/ensure-installed.mjs'))) {
  run('reference PDS peer install', process.execPath, ['test/peers/ensure-installed.mjs'])
}
// The status page is checked in Debian's Chromium: install it on a fresh machine (root, as in CI).
if (!existsSync('/usr/bin/chromium') && (only.length === 0 || only.some((a) => a.includes('status')))) {
  const apt = { ...env, DEBIAN_FRONTEND: 'noninteractive' }
  console.log('\n=== installing chromium (apt-get) for the status page test')
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env: apt })
  spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'chromium'], { stdio: 'inherit', env: apt })
}
// The real-AppView suite's peers (apt Postgres + Redis, @atproto/dev-env): a few minutes once, then cached.
if (existsSync(join(root, 'test/appview/ensure-installed.mjs')) && (only.length === 0 || only.some((a) => a.includes('appview')))) {
  run('AppView peer install', process.execPath, ['test/appview/ensure-installed.mjs'])
}
const e2e = spawnSync(bin('bun'), ['test', ...only], { stdio: ['ignore', 'pipe', 'pipe'], env, maxBuffer: 256 * 1024 * 1024 })
const e2eOut = `${e2e.stdout}${e2e.stderr}`
process.stdout.write(e2eOut)
const count = (word) => Number(e2eOut.match(new RegExp(`^\\s*(\\d+) ${word}$`, 'm'))?.[1] ?? 0)
passed += count('pass')
failed += count('fail')
if (e2e.status !== 0 && count('fail') === 0) failed++

console.log(`\n${passed} passed, ${failed} failed`)
process.exit(failed > 0 ? 1 : 0)
