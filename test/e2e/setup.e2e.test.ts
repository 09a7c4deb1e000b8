/**
 * `npm run setup`, unattended, against temporary copies of the project with
 * Cloudflare unreachable (--offline, and no wrangler login on this machine):
 * the files it writes, keys the PDS really runs with (a `wrangler dev` on the
 * generated config, logged in with the generated password, its commits
 * verified against the generated key), byte-identical re-runs, keys never
 * replaced, and a did:plc created on a loopback @did-plc/server.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import { parsePasswordSetting, verifyPassword } from '../../src/password-setting'
import { freePort, REPO_ROOT } from './harness'
import { createSession, expectStatus, post, request, verifyRepoCar, xget, xpost } from './xrpc-client'

const NODE = join(REPO_ROOT, 'node_modules/node/bin/node')
const WRANGLER = join(REPO_ROOT, 'node_modules/wrangler/bin/wrangler.js')
const dirs: string[] = []

/** A project copy setup can edit: its own wrangler.toml, the real sources and migrations linked in. */
const projectCopy = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'pds-setup-'))
  dirs.push(dir)
  writeFileSync(join(dir, 'wrangler.toml'), readFileSync(join(REPO_ROOT, 'wrangler.toml')))
  for (const name of ['src', 'migrations', 'drizzle']) symlinkSync(join(REPO_ROOT, name), join(dir, name))
  return dir
}

interface Run {
  code: number | null
  out: string
}

/** Runs a command without blocking this process (the loopback PLC server lives in it). */
const run = (args: string[], env: Record<string, string> = {}): Promise<Run> =>
  new Promise((ok) => {
    const child = spawn(NODE, args, { cwd: REPO_ROOT, env: { ...process.env, ...env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    child.on('exit', (code) => ok({ code, out }))
  })

const setup = (dir: string, ...flags: string[]): Promise<Run> => run(['scripts/setup.mjs', '--dir', dir, '--yes', '--offline', ...flags])

/** Every file setup may write, with its bytes and mtime. */
const snapshot = (dir: string): Record<string, string> =>
  Object.fromEntries(
    readdirSync(dir)
      .filter((f) => !['src', 'migrations', 'drizzle', '.wrangler', 'state'].includes(f))
      .map((f) => [f, `${statSync(join(dir, f)).mtimeMs}:${readFileSync(join(dir, f), 'utf8')}`]),
  )

const devVars = (dir: string): Record<string, string> =>
  Object.fromEntries([...readFileSync(join(dir, '.dev.vars'), 'utf8').matchAll(/^([A-Z_]+)="(.*)"$/gm)].map((m) => [m[1], m[2]]))

const json = (dir: string, file: string) => JSON.parse(readFileSync(join(dir, file), 'utf8'))
const generatedPassword = (out: string): string => {
  const m = out.match(/YOUR LOGIN PASSWORD[^\n]*\n\* ([a-z0-9-]{19}) /)
  if (!m) throw new Error(`no password in the output:\n${out}`)
  return m[1]
}

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

describe('did:web, offline', () => {
  let dir: string
  let first: Run
  const original = readFileSync(join(REPO_ROOT, 'wrangler.toml'), 'utf8')

  beforeAll(async () => {
    dir = projectCopy()
    first = await setup(dir, '--hostname', 'pds.example.test', '--handle', 'alice.pds.example.test', '--did', 'web')
  }, 60_000)

  test('it succeeds and says Cloudflare was not contacted, with the exact commands for later', () => {
    expect(first.code, first.out).toBe(0)
    expect(first.out).toContain('Cloudflare was not contacted')
    for (const cmd of [
      'npx wrangler d1 create edge-pds',
      'npx wrangler kv namespace create edge-pds-cache',
      'npx wrangler r2 bucket create edge-pds-blobs',
      `grep '^PDS_SIGNING_KEY=' .dev.vars | cut -d'"' -f2 | npx wrangler secret put PDS_SIGNING_KEY`,
      `grep '^JWT_SECRET=' .dev.vars | cut -d'"' -f2 | npx wrangler secret put JWT_SECRET`,
      `grep '^PDS_PASSWORD=' .dev.vars | cut -d'"' -f2 | npx wrangler secret put PDS_PASSWORD`,
      'npx wrangler d1 migrations apply DB --remote',
    ]) {
      expect(first.out).toContain(cmd)
    }
  }, 60_000)

  test('.dev.vars holds a valid key, a JWT secret and only a salted hash of the printed password', async () => {
    const vars = devVars(dir)
    expect(vars.PDS_SIGNING_KEY).toMatch(/^[0-9a-f]{64}$/)
    expect(vars.JWT_SECRET).toMatch(/^[0-9a-f]{64}$/)
    expect(vars.PDS_PASSWORD).toMatch(/^pbkdf2-sha256\$100000\$[\w-]+\$[\w-]{43}$/)
    const password = generatedPassword(first.out)
    expect(await verifyPassword(await parsePasswordSetting(vars.PDS_PASSWORD), password)).toBe(true)
    expect(statSync(join(dir, '.dev.vars')).mode & 0o777).toBe(0o600)
    // The plain password is written nowhere.
    for (const f of readdirSync(dir)) {
      if (statSync(join(dir, f)).isFile()) expect(readFileSync(join(dir, f), 'utf8')).not.toContain(password)
    }
    const key = await Secp256k1Keypair.import(vars.PDS_SIGNING_KEY)
    expect(json(dir, '.pds-setup.json').signingDidKey).toBe(key.did())
  }, 60_000)

  test('wrangler.toml: the vars and Custom Domains are set, everything else (comments included) kept', () => {
    const toml = readFileSync(join(dir, 'wrangler.toml'), 'utf8')
    expect(toml).toContain('PDS_HOSTNAME = "pds.example.test"')
    expect(toml).toContain('PDS_DID = "did:web:pds.example.test"')
    expect(toml).toContain('PDS_HANDLE = "alice.pds.example.test"')
    expect(toml).toContain('routes = [{ pattern = "pds.example.test", custom_domain = true }, { pattern = "alice.pds.example.test", custom_domain = true }]')
    const changed = new Set(['PDS_HOSTNAME', 'PDS_DID', 'PDS_HANDLE'])
    const kept = original.split('\n').filter((l) => !changed.has(l.split(' = ')[0]))
    const now = toml.split('\n')
    for (const line of kept) expect(now).toContain(line)
    expect(now.length).toBe(original.split('\n').length + 2) // the routes line and its comment
  }, 60_000)

  test('the key backup matches the key in use, and the owner is told to save it', async () => {
    const backup = json(dir, 'pds-keys-backup.json')
    expect(backup.signingKey.privateKeyHex).toBe(devVars(dir).PDS_SIGNING_KEY)
    expect(backup.signingKey.didKey).toBe((await Secp256k1Keypair.import(backup.signingKey.privateKeyHex)).did())
    expect(backup.did).toBe('did:web:pds.example.test')
    expect(statSync(join(dir, 'pds-keys-backup.json')).mode & 0o777).toBe(0o600)
    expect(first.out).toContain('SAVE YOUR KEY BACKUP NOW')
  }, 60_000)

  test('DNS: the handle under the PDS host needs no TXT record', () => {
    expect(first.out).toContain('handle alice.pds.example.test: nothing to add')
    expect(first.out).not.toContain('_atproto.')
  }, 60_000)

  test('re-running (with or without the same password) changes no file at all', async () => {
    const before = snapshot(dir)
    const again = await setup(dir)
    expect(again.code, again.out).toBe(0)
    expect(again.out).toContain('nothing changed')
    expect(again.out).not.toContain('YOUR LOGIN PASSWORD')
    const withPassword = await setup(dir, '--password', generatedPassword(first.out), '--hostname', 'pds.example.test', '--did', 'web')
    expect(withPassword.code, withPassword.out).toBe(0)
    expect(snapshot(dir)).toEqual(before)
  }, 60_000)

  test('a different host name on re-run is refused and changes nothing', async () => {
    const before = snapshot(dir)
    const res = await setup(dir, '--hostname', 'other.example.test')
    expect(res.code).toBe(1)
    expect(res.out).toContain('makes a new identity')
    expect(snapshot(dir)).toEqual(before)
  }, 60_000)

  test('the PDS runs on the generated config: login with the generated password, commits signed by the generated key', async () => {
    const persist = mkdtempSync(join(tmpdir(), 'pds-setup-state-'))
    dirs.push(persist)
    const config = join(dir, 'wrangler.toml')
    const migrate = await run([WRANGLER, 'd1', 'migrations', 'apply', 'DB', '--local', '--persist-to', persist, '--config', config], { CI: 'true' })
    expect(migrate.code, migrate.out).toBe(0)
    const port = await freePort()
    // Secrets come from the generated .dev.vars; only relays are switched off (no network here).
    const child = spawn(NODE, [WRANGLER, 'dev', '--config', config, '--port', String(port), '--ip', '127.0.0.1', '--inspector-port', String(await freePort()), '--persist-to', persist, '--var', 'RELAY_HOSTS:', '--show-interactive-dev-session=false'], {
      cwd: dir,
      env: { ...process.env, CI: 'true', CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    try {
      await waitReady(child)
      const pds = { url: `http://127.0.0.1:${port}` }
      const session = await createSession(pds, 'alice.pds.example.test', generatedPassword(first.out))
      expect(session.did).toBe('did:web:pds.example.test')
      const wrong = await xpost(pds, 'com.atproto.server.createSession', { identifier: 'alice.pds.example.test', password: 'not-it' })
      expect(wrong.status).toBe(401)
      expectStatus(await xpost(pds, 'com.atproto.repo.createRecord', { repo: session.did, collection: 'app.bsky.feed.post', record: post('set up in one command') }, session.accessJwt), 200)
      const car = expectStatus(await xget(pds, 'com.atproto.sync.getRepo', { did: session.did }), 200)
      const checked = await verifyRepoCar(car.bytes, session.did, json(dir, '.pds-setup.json').signingDidKey)
      expect(checked.records.size).toBe(1)
      const doc = expectStatus(await request(pds, '/.well-known/did.json'), 200).body
      expect(doc.id).toBe('did:web:pds.example.test')
    } finally {
      try {
        process.kill(-(child.pid as number), 'SIGKILL')
      } catch {}
    }
  }, 120_000)
})

const waitReady = (child: ChildProcess): Promise<void> =>
  new Promise((ok, fail) => {
    let log = ''
    const timer = setTimeout(() => fail(new Error(`wrangler dev not ready:\n${log}`)), 60_000)
    const onData = (d: Buffer): void => {
      log += d
      if (/Ready on /.test(log)) {
        clearTimeout(timer)
        ok()
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', (code) => fail(new Error(`wrangler dev exited (${code}):\n${log}`)))
  })

describe('existing keys are never overwritten', () => {
  const oldKey = '1f'.repeat(32)
  const oldJwt = 'j'.repeat(40)

  test('a .dev.vars from `npm run dev` keeps its key and JWT secret; its plain password becomes a hash of the same password', async () => {
    const dir = projectCopy()
    writeFileSync(join(dir, '.dev.vars'), `# from npm run dev\nPDS_SIGNING_KEY="${oldKey}"\nJWT_SECRET="${oldJwt}"\nPDS_PASSWORD="old-password"\nEXTRA_LOCAL="kept"\n`)
    const res = await setup(dir, '--hostname', 'pds.example.test', '--handle', 'carol.example.org', '--did', 'web')
    expect(res.code, res.out).toBe(0)
    const vars = devVars(dir)
    expect(vars.PDS_SIGNING_KEY).toBe(oldKey)
    expect(vars.JWT_SECRET).toBe(oldJwt)
    expect(vars.EXTRA_LOCAL).toBe('kept')
    expect(await verifyPassword(await parsePasswordSetting(vars.PDS_PASSWORD), 'old-password')).toBe(true)
    expect(readFileSync(join(dir, '.dev.vars'), 'utf8').startsWith('# from npm run dev\n')).toBe(true)
    expect(res.out).not.toContain('YOUR LOGIN PASSWORD')
    // A handle elsewhere needs its _atproto TXT record.
    expect(res.out).toContain('_atproto.carol.example.org')
    expect(res.out).toContain('TXT  "did=did:web:pds.example.test"')
  }, 60_000)

  test('a lost .dev.vars is not silently replaced by new keys; --from-backup restores the same key', async () => {
    const dir = projectCopy()
    expect((await setup(dir, '--hostname', 'pds.example.test', '--did', 'web')).code).toBe(0)
    const key = devVars(dir).PDS_SIGNING_KEY
    const backup = join(tmpdir(), `backup-${Date.now()}.json`)
    writeFileSync(backup, readFileSync(join(dir, 'pds-keys-backup.json')))
    rmSync(join(dir, 'pds-keys-backup.json')) // the owner moved it somewhere safe, as told
    rmSync(join(dir, '.dev.vars'))
    const refused = await setup(dir)
    expect(refused.code).toBe(1)
    expect(refused.out).toContain('--from-backup')
    const restored = await setup(dir, '--from-backup', backup)
    rmSync(backup)
    expect(restored.code, restored.out).toBe(0)
    expect(devVars(dir).PDS_SIGNING_KEY).toBe(key)
  }, 60_000)
})

describe('did:plc on a loopback PLC directory', () => {
  const require = createRequire(import.meta.url)
  let plc: { start(): Promise<{ address(): { port: number } }>; destroy(): Promise<void> }
  let plcUrl: string

  beforeAll(async () => {
    await run([join(REPO_ROOT, 'test/peers/ensure-installed.mjs')])
    const { PlcServer, Database } = require(join(REPO_ROOT, 'test/peers/node_modules/@did-plc/server'))
    plc = PlcServer.create({ db: Database.mock(), port: 0 })
    plcUrl = `http://localhost:${(await plc.start()).address().port}`
  }, 300_000)

  afterAll(async () => {
    await plc?.destroy()
  }, 60_000)

  test('the genesis op is published; the directory serves our keys, handle and endpoint; re-run changes nothing', async () => {
    const dir = projectCopy()
    const res = await setup(dir, '--hostname', 'pds.example.test', '--handle', 'dave.example.org', '--did', 'plc', '--plc-url', plcUrl)
    expect(res.code, res.out).toBe(0)
    const state = json(dir, '.pds-setup.json')
    expect(state.did).toMatch(/^did:plc:[a-z2-7]{24}$/)
    expect(state.plc.published).toBe(true)
    const data = (await (await fetch(`${plcUrl}/${state.did}/data`)).json()) as any
    const backup = json(dir, 'pds-keys-backup.json')
    // The owner's key first, then the PDS's own rotation key (in .dev.vars, pushed as PDS_PLC_ROTATION_KEY).
    expect(data.rotationKeys).toEqual([backup.rotationKey.didKey, backup.pdsRotationKey.didKey])
    expect(readFileSync(join(dir, '.dev.vars'), 'utf8')).toContain(`PDS_PLC_ROTATION_KEY="${backup.pdsRotationKey.privateKeyHex}"`)
    expect(data.verificationMethods).toEqual({ atproto: backup.signingKey.didKey })
    expect(data.alsoKnownAs).toEqual(['at://dave.example.org'])
    expect(data.services.atproto_pds).toEqual({ type: 'AtprotoPersonalDataServer', endpoint: 'https://pds.example.test' })
    expect((await Secp256k1Keypair.import(backup.rotationKey.privateKeyHex)).did()).toBe(backup.rotationKey.didKey)
    // The rotation key is the owner's alone: never in .dev.vars (which goes to Cloudflare).
    expect(readFileSync(join(dir, '.dev.vars'), 'utf8')).not.toContain(backup.rotationKey.privateKeyHex)
    const toml = readFileSync(join(dir, 'wrangler.toml'), 'utf8')
    expect(toml).toContain(`PDS_DID = "${state.did}"`)
    expect(toml).toContain(`PLC_URL = "${plcUrl}"`)

    const before = snapshot(dir)
    const again = await setup(dir, '--plc-url', plcUrl)
    expect(again.code, again.out).toBe(0)
    expect(snapshot(dir)).toEqual(before)
    const log = (await (await fetch(`${plcUrl}/${state.did}/log`)).json()) as unknown[]
    expect(log.length).toBe(1)
  }, 60_000)

  test('an unreachable directory: the DID is still decided, the owner gets the command, a later run publishes it', async () => {
    const dir = projectCopy()
    const dead = `http://127.0.0.1:${await freePort()}`
    const res = await setup(dir, '--hostname', 'pds.example.test', '--handle', 'erin.example.org', '--did', 'plc', '--plc-url', dead)
    expect(res.code, res.out).toBe(0)
    const state = json(dir, '.pds-setup.json')
    expect(state.plc.published).toBe(false)
    expect(res.out).toContain(`Could not publish ${state.did}`)
    expect(res.out).toContain(`--data @plc-genesis-op.json ${dead}/${state.did}`)
    const later = await setup(dir, '--plc-url', plcUrl)
    expect(later.code, later.out).toBe(0)
    expect(json(dir, '.pds-setup.json').plc.published).toBe(true)
    expect(json(dir, '.pds-setup.json').did).toBe(state.did)
    expect((await fetch(`${plcUrl}/${state.did}/data`)).status).toBe(200)
  }, 60_000)
})
