#!/usr/bin/env node
/**
 * `npm run deploy`: preflight, then `wrangler deploy`.
 *
 *   1. wrangler.toml is configured (no placeholder ids, a public host name);
 *   2. the bundle builds (`wrangler deploy --dry-run --outdir`) and fits the
 *      size limits (raw and gzip reported);
 *   3. Cloudflare has the required secrets (`wrangler secret list`) and the
 *      remote D1 has every migration (`wrangler d1 migrations list --remote`;
 *      pending ones are applied: the schema must be ahead of the code);
 *   4. `wrangler deploy`.
 * Offline it checks what it can locally (.dev.vars has the secrets) and says
 * why it stopped. `--check-bundle` runs only step 2 (CI does, in npm test).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { gzipSync } from 'node:zlib'
import * as cf from './setup/cloudflare.mjs'
import { PLACEHOLDER_D1_ID, PLACEHOLDER_KV_ID, readDevVars, readTomlValue } from './setup/files.mjs'
import { isLoopbackHost } from './setup/report.mjs'

const ROOT = new URL('..', import.meta.url).pathname
const REQUIRED_SECRETS = ['PDS_SIGNING_KEY', 'JWT_SECRET', 'PDS_PASSWORD']
const MiB = 1024 * 1024

/**
 * Size limits. Cloudflare dropped its compressed limits (3 MiB Free / 10 MiB
 * Paid, gzip) on 2026-09-04 for one limit of 64 MiB uncompressed on every plan
 * (developers.cloudflare.com/workers/platform/limits; workers-sdk#14001). We
 * still hold the bundle to the former Free plan figure as our own budget: a
 * bigger Worker starts slower, and older accounts and tools still quote it.
 */
const LIMITS = { raw: 64 * MiB, gzip: 3 * MiB }

const fmt = (n) => `${(n / 1024).toFixed(1)} KiB`

/** Builds the deployable bundle offline and measures it. */
const measureBundle = (dir) => {
  const out = mkdtempSync(join(tmpdir(), 'edge-pds-bundle-'))
  try {
    const r = cf.wrangler(dir, ['deploy', '--dry-run', '--outdir', out])
    if (!r.ok) return { ok: false, error: r.output.trim().split('\n').slice(-15).join('\n') }
    // What is uploaded: the modules (not the source map or wrangler's README).
    const files = readdirSync(out).filter((f) => /\.(m?js|wasm|bin|txt|html|json)$/.test(f) && !f.endsWith('.map') && f !== 'README.md')
    const bytes = files.map((f) => readFileSync(join(out, f)))
    const raw = bytes.reduce((n, b) => n + b.byteLength, 0)
    const gzip = bytes.reduce((n, b) => n + gzipSync(b, { level: 9 }).byteLength, 0)
    const wranglerLine = r.output.match(/Total Upload: .*/)?.[0] ?? ''
    return { ok: true, raw, gzip, files: files.map((f) => `${f} ${fmt(statSync(join(out, f)).size)}`), wranglerLine }
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}

const checkBundle = (dir) => {
  const m = measureBundle(dir)
  if (!m.ok) {
    console.error(`✗ bundle does not build:\n${m.error}`)
    return false
  }
  const over = []
  if (m.raw > LIMITS.raw) over.push(`raw ${fmt(m.raw)} > ${fmt(LIMITS.raw)} (platform limit)`)
  if (m.gzip > LIMITS.gzip) over.push(`gzip ${fmt(m.gzip)} > ${fmt(LIMITS.gzip)} (budget: former Free plan limit)`)
  console.log(
    `${over.length ? '✗' : '✓'} bundle: ${fmt(m.raw)} raw / ${fmt(m.gzip)} gzip ` +
      `(${((m.gzip / LIMITS.gzip) * 100).toFixed(1)}% of the ${LIMITS.gzip / MiB} MiB gzip budget, ` +
      `${((m.raw / LIMITS.raw) * 100).toFixed(1)}% of the ${LIMITS.raw / MiB} MiB limit)${m.wranglerLine ? `; wrangler: ${m.wranglerLine}` : ''}`,
  )
  for (const problem of over) console.error(`  ${problem}`)
  return over.length === 0
}

/** Problems in wrangler.toml that would deploy a PDS that cannot work. */
const configProblems = (dir) => {
  const toml = readFileSync(join(dir, 'wrangler.toml'), 'utf8')
  const problems = []
  const host = readTomlValue(toml, '[vars]', 'PDS_HOSTNAME')
  if (!host || isLoopbackHost(host)) problems.push(`PDS_HOSTNAME is "${host ?? ''}": set your public host name`)
  if (readTomlValue(toml, '[[d1_databases]]', 'database_id', /binding\s*=\s*"DB"/) === PLACEHOLDER_D1_ID) problems.push('the D1 database_id is the placeholder')
  if (readTomlValue(toml, '[[kv_namespaces]]', 'id', /binding\s*=\s*"CACHE"/) === PLACEHOLDER_KV_ID) problems.push('the KV namespace id is the placeholder')
  return problems
}

const main = () => {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, 'check-bundle': { type: 'boolean' } } })
  const dir = resolve(values.dir ?? ROOT)
  if (values['check-bundle']) return checkBundle(dir) ? 0 : 1

  const problems = configProblems(dir)
  for (const p of problems) console.error(`✗ wrangler.toml: ${p}`)
  if (problems.length) {
    console.error('\nRun `npm run setup` first (it fills these in).')
    return 1
  }
  console.log('✓ wrangler.toml is configured')
  if (!checkBundle(dir)) return 1

  const reach = cf.checkCloudflare(dir)
  if (!reach.ok) {
    const local = readDevVars(join(dir, '.dev.vars'))
    const missing = REQUIRED_SECRETS.filter((s) => !local[s])
    console.error(`✗ ${reach.reason}.`)
    console.error(
      missing.length
        ? `  Locally, .dev.vars also lacks ${missing.join(', ')}: run \`npm run setup\`.`
        : `  Locally, .dev.vars has ${REQUIRED_SECRETS.join(', ')}${existsSync(join(dir, '.pds-setup.json')) ? '' : ' (but npm run setup has not run here)'}.`,
    )
    console.error('  Nothing was deployed. Once Cloudflare is reachable, run `npm run deploy` again.')
    return 1
  }
  const secrets = cf.listSecrets(dir)
  const missing = secrets === null ? null : REQUIRED_SECRETS.filter((s) => !secrets.includes(s))
  if (missing === null || missing.length) {
    console.error(missing === null ? '✗ could not list the Worker secrets' : `✗ secrets missing in Cloudflare: ${missing.join(', ')} (run \`npm run setup\`)`)
    return 1
  }
  console.log(`✓ secrets present: ${REQUIRED_SECRETS.join(', ')}`)
  const pending = cf.pendingRemoteMigrations(dir)
  if (pending === null) {
    console.error('✗ could not list the remote D1 migrations')
    return 1
  }
  if (pending.length) {
    console.log(`… applying ${pending.length} pending migration(s): ${pending.join(', ')}`)
    cf.applyRemoteMigrations(dir)
  }
  console.log('✓ remote D1 migrations applied')
  const deploy = spawnSync(process.execPath, [join(ROOT, 'node_modules/wrangler/bin/wrangler.js'), 'deploy', '--config', join(dir, 'wrangler.toml')], {
    cwd: dir,
    stdio: 'inherit',
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
  })
  return deploy.status ?? 1
}

process.exit(main())
