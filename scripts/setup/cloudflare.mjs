/**
 * Cloudflare through wrangler: the D1 database, R2 bucket and KV namespace,
 * the secrets and the remote migrations. Used by setup and deploy.
 *
 * Each step first looks at what exists (by name) and only creates what is
 * missing, so a re-run after a partial run finishes the job. A secret that
 * already exists is never overwritten: Cloudflare cannot show its value, so
 * there is no way to know it would be the same.
 *
 * When wrangler cannot reach Cloudflare (offline, not logged in) every step
 * becomes a command printed for later.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

const ROOT = new URL('../..', import.meta.url).pathname
const NODE = process.execPath
const WRANGLER = join(ROOT, 'node_modules/wrangler/bin/wrangler.js')

/** Runs wrangler in `dir` against its wrangler.toml; never throws. */
export const wrangler = (dir, args, { input, timeoutMs = 120_000 } = {}) => {
  const r = spawnSync(NODE, [WRANGLER, ...args, '--config', join(dir, 'wrangler.toml')], {
    cwd: dir,
    input,
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, CI: 'true', WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1', FORCE_COLOR: '0' },
  })
  return { ok: r.status === 0, status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', output: `${r.stdout ?? ''}${r.stderr ?? ''}` }
}

const firstJson = (text) => {
  const start = text.search(/[[{]/)
  if (start < 0) return null
  try {
    return JSON.parse(text.slice(start))
  } catch {
    return null
  }
}

/** Logged in and reachable? `{ok: true, account}` or `{ok: false, reason}`. */
export const checkCloudflare = (dir) => {
  const r = wrangler(dir, ['whoami', '--json'], { timeoutMs: 30_000 })
  const who = firstJson(r.stdout)
  if (who?.loggedIn) return { ok: true, account: who.email ?? who.accounts?.[0]?.name ?? 'logged in' }
  if (who && who.loggedIn === false) return { ok: false, reason: 'wrangler is not logged in to Cloudflare (run `npx wrangler login`, or set CLOUDFLARE_API_TOKEN)' }
  const line = r.output.split('\n').find((l) => /error|fetch|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|timed out/i.test(l))
  return { ok: false, reason: `Cloudflare cannot be reached${line ? `: ${line.trim()}` : r.status === null ? ' (wrangler timed out)' : ''}` }
}

const fail = (what, r) => new Error(`${what} failed:\n${r.output.trim().split('\n').slice(-12).join('\n')}`)

/** The id of D1 database `name`, creating it if needed. */
export const ensureD1 = (dir, name) => {
  const listed = firstJson(wrangler(dir, ['d1', 'list', '--json']).stdout)
  const found = Array.isArray(listed) ? listed.find((db) => db.name === name) : null
  if (found) return { id: found.uuid, created: false }
  const r = wrangler(dir, ['d1', 'create', name])
  const id = r.output.match(/"?database_id"?\s*[=:]\s*"([0-9a-f-]{36})"/)?.[1]
  if (!r.ok || !id) throw fail(`wrangler d1 create ${name}`, r)
  return { id, created: true }
}

/** The id of KV namespace `title`, creating it if needed. */
export const ensureKv = (dir, title) => {
  const listed = firstJson(wrangler(dir, ['kv', 'namespace', 'list']).stdout)
  const found = Array.isArray(listed) ? listed.find((ns) => ns.title === title) : null
  if (found) return { id: found.id, created: false }
  const r = wrangler(dir, ['kv', 'namespace', 'create', title])
  const id = r.output.match(/"?id"?\s*[=:]\s*"([0-9a-f]{32})"/)?.[1]
  if (!r.ok || !id) throw fail(`wrangler kv namespace create ${title}`, r)
  return { id, created: true }
}

export const ensureR2 = (dir, bucket) => {
  const listed = wrangler(dir, ['r2', 'bucket', 'list'])
  if (listed.ok && new RegExp(`name:\\s+${bucket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`, 'm').test(listed.stdout)) return { created: false }
  const r = wrangler(dir, ['r2', 'bucket', 'create', bucket])
  if (!r.ok && !/already exists/i.test(r.output)) throw fail(`wrangler r2 bucket create ${bucket}`, r)
  return { created: r.ok }
}

/** Names of the Worker's secrets; null when they cannot be listed (then nothing is pushed). */
export const listSecrets = (dir) => {
  const r = wrangler(dir, ['secret', 'list', '--format', 'json'])
  const listed = firstJson(r.stdout)
  if (r.ok && Array.isArray(listed)) return listed.map((s) => s.name)
  // A Worker that was never deployed has no secrets yet.
  if (/10007|not found|does not exist/i.test(r.output)) return []
  return null
}

/** Pushes the secrets Cloudflare does not have yet (value on stdin, never on the command line). */
export const pushMissingSecrets = (dir, secrets) => {
  const existing = listSecrets(dir)
  if (existing === null) throw new Error('could not list the Worker secrets, so none were pushed (an existing one must never be overwritten)')
  const pushed = []
  const kept = []
  for (const [name, value] of Object.entries(secrets)) {
    if (existing.includes(name)) {
      kept.push(name)
      continue
    }
    const r = wrangler(dir, ['secret', 'put', name], { input: `${value}\n` })
    if (!r.ok) throw fail(`wrangler secret put ${name}`, r)
    pushed.push(name)
  }
  return { pushed, kept }
}

export const applyRemoteMigrations = (dir) => {
  const r = wrangler(dir, ['d1', 'migrations', 'apply', 'DB', '--remote'], { timeoutMs: 300_000 })
  if (!r.ok) throw fail('wrangler d1 migrations apply DB --remote', r)
  return r.output
}

/** Pending remote migrations: [] when up to date, null when it cannot be told. */
export const pendingRemoteMigrations = (dir) => {
  const r = wrangler(dir, ['d1', 'migrations', 'list', 'DB', '--remote'])
  if (!r.ok) return null
  if (/No migrations to apply/i.test(r.output)) return []
  return [...r.output.matchAll(/(\d{4}_[\w-]+\.sql)/g)].map((m) => m[1])
}

/** The commands that do by hand what the steps above do, for when Cloudflare is unreachable. */
export const laterCommands = ({ d1Name, kvTitle, bucket, secretNames, needD1, needKv }) => [
  'npx wrangler login',
  ...(needD1 ? [`npx wrangler d1 create ${d1Name}          # put its database_id in wrangler.toml [[d1_databases]]`] : []),
  ...(needKv ? [`npx wrangler kv namespace create ${kvTitle}   # put its id in wrangler.toml [[kv_namespaces]]`] : []),
  `npx wrangler r2 bucket create ${bucket}`,
  ...secretNames.map((name) => `grep '^${name}=' .dev.vars | cut -d'"' -f2 | npx wrangler secret put ${name}`),
  'npx wrangler d1 migrations apply DB --remote',
]
