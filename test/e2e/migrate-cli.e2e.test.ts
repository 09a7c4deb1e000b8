/**
 * `npm run migrate` end to end against real peers (the reference PDS and an
 * in-memory PLC directory): moving in with the old PDS failing half-way
 * through the blobs (a loopback proxy in front of it starts answering 502),
 * the CLI saying what is done and what is left, then the same command
 * resuming (the import and the blobs already copied are skipped), asking for
 * the emailed PLC code, verifying and finishing; then moving out with
 * `--to`, the code read with `npm run plc-token`.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { spawn, spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import { type PdsProcess, REPO_ROOT, startPds, stopPds } from './harness'
import { referencePlcToken, seedAccount, type Side } from './helpers/migration'
import { HAVE_REFERENCE, type ReferencePds, spawnReference } from './helpers/reference-peer'
import { createSession, expectStatus, xget } from './xrpc-client'

const HANDLE = 'alice.test'
const OLD_PASSWORD = 'old-pds-password'
const NO_APPVIEW = { bskyAppViewUrl: 'http://127.0.0.1:1', bskyAppViewDid: 'did:web:appview.invalid' }
const NODE = join(REPO_ROOT, 'node_modules/node/bin/node')

let old: ReferencePds
let next: ReferencePds | undefined
let ours: PdsProcess
let proxy: ReturnType<typeof Bun.serve>
/** getBlob calls the proxy lets through before it starts failing (Infinity: never fails). */
let blobBudget = Number.POSITIVE_INFINITY

interface CliRun {
  code: number | null
  out: string
}

/** Runs the CLI; `answer(prompt)` supplies what it asks for on stdin. */
const runCli = (args: string[], answer: (prompt: string) => Promise<string | null>): Promise<CliRun> =>
  new Promise((resolve) => {
    const child = spawn(NODE, ['scripts/migrate.mjs', ...args], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    const onData = async (d: Buffer) => {
      const text = String(d)
      out += text
      for (const line of text.split('\n')) {
        if (!line.trim().endsWith(':')) continue
        const reply = await answer(line)
        if (reply !== null) child.stdin.write(`${reply}\n`)
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.on('exit', (code) => resolve({ code, out }))
  })

beforeAll(async () => {
  if (!HAVE_REFERENCE) throw new Error('test/peers is needed for the migration suite')
  old = (await spawnReference({ handle: HANDLE, password: OLD_PASSWORD, env: NO_APPVIEW }))!
  await seedAccount({ url: old.url, token: old.accessJwt }, old.did, { posts: 40 })
  // The old PDS behind a proxy that can be told to fail.
  proxy = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: async (req) => {
      const url = new URL(req.url)
      if (url.pathname === '/xrpc/com.atproto.sync.getBlob' && blobBudget-- <= 0) {
        return Response.json({ error: 'UpstreamFailure', message: 'the old PDS is having a bad day' }, { status: 502 })
      }
      const upstream = await fetch(`${old.url}${url.pathname}${url.search}`, { method: req.method, headers: req.headers, body: req.body, duplex: 'half' } as RequestInit)
      // fetch already undid any compression: the headers must not claim it.
      const headers = new Headers(upstream.headers)
      headers.delete('content-encoding')
      headers.delete('content-length')
      return new Response(upstream.body, { status: upstream.status, headers })
    },
  })
  ours = await startPds({
    handle: HANDLE,
    vars: { PDS_DID: old.did, PLC_URL: old.plcUrl, PDS_PLC_ROTATION_KEY: Buffer.from(await (await Secp256k1Keypair.create({ exportable: true })).export()).toString('hex') },
  })
}, 240_000)

afterAll(async () => {
  proxy?.stop(true)
  await stopPds(ours)
  await next?.stop()
  await old?.stop()
}, 60_000)

describe('npm run migrate', () => {
  const inArgs = () => ['--from', `http://127.0.0.1:${proxy.port}`, '--identifier', HANDLE, '--password', OLD_PASSWORD, '--pds', ours.url, '--new-password', ours.password]

  test('moving in: the old PDS fails half-way through the blobs; the CLI says what is left and changes nothing there', async () => {
    blobBudget = 2
    const run = await runCli(inArgs(), async () => null)
    expect(run.code).toBe(1)
    expect(run.out).toContain('✓ account')
    expect(run.out).toContain('✓ repo')
    expect(run.out).toMatch(/✗ blobs: .*502/)
    expect(run.out).toContain('Left: blobs, verify, identity, activate, retire')
    expect(expectStatus(await xget({ url: old.url }, 'com.atproto.sync.getRepoStatus', { did: old.did }), 200).body.active).toBe(true)
    const session = await createSession(ours, old.did, ours.password)
    const status = expectStatus(await xget(ours, 'com.atproto.server.checkAccountStatus', undefined, session.accessJwt), 200).body
    expect(status.importedBlobs).toBe(2)
    expect(status.expectedBlobs).toBeGreaterThan(2)
  }, 120_000)

  test('the same command resumes: import and copied blobs skipped, the emailed code asked for, everything verified, then live here', async () => {
    blobBudget = Number.POSITIVE_INFINITY
    const run = await runCli(inArgs(), async (prompt) => (prompt.includes('emailed') ? referencePlcToken(old.dataDir, old.did) : null))
    expect(run.code, run.out).toBe(0)
    expect(run.out).toContain('✓ repo: already imported')
    expect(run.out).toMatch(/✓ verify: \d+ records, \d+ blobs and the preferences are identical/)
    expect(run.out).toContain('✓ retire: deactivated on the old PDS')
    expect(expectStatus(await xget(ours, 'com.atproto.sync.getRepoStatus', { did: old.did }), 200).body).toMatchObject({ active: true })
    expect(expectStatus(await xget({ url: old.url }, 'com.atproto.sync.getRepoStatus', { did: old.did }), 200).body).toMatchObject({ active: false })
    const data = (await (await fetch(`${old.plcUrl}/${old.did}/data`)).json()) as { services: { atproto_pds: { endpoint: string } } }
    expect(data.services.atproto_pds.endpoint).toBe(ours.publicUrl)
  }, 120_000)

  test('moving out with --to, the PLC code from npm run plc-token', async () => {
    next = (await spawnReference({ handle: 'bob.test', password: 'bob-password', plcUrl: old.plcUrl, env: NO_APPVIEW }))!
    const plcToken = (): string => {
      const r = spawnSync(NODE, ['scripts/plc-token.mjs', '--persist-to', ours.persistDir, '--json'], { cwd: REPO_ROOT, encoding: 'utf8' })
      return JSON.parse(r.stdout).token
    }
    const run = await runCli(
      ['--to', next.url, '--pds', ours.url, '--password', ours.password, '--new-password', 'next-password', '--email', 'alice@example.com'],
      async (prompt) => (prompt.includes('PLC code') ? plcToken() : null),
    )
    expect(run.code, run.out).toBe(0)
    expect(run.out).toContain('✓ retire: deactivated on the old PDS')
    const data = (await (await fetch(`${old.plcUrl}/${old.did}/data`)).json()) as { services: { atproto_pds: { endpoint: string } } }
    expect(data.services.atproto_pds.endpoint).toBe(next.url)
    expect(expectStatus(await xget(ours, 'com.atproto.sync.getRepoStatus', { did: old.did }), 200).body).toEqual({ did: old.did, active: false, status: 'deactivated' })
    const there: Side = { url: next.url, token: (await createSession(next, old.did, 'next-password')).accessJwt }
    expect(expectStatus(await xget(there, 'com.atproto.sync.getRepoStatus', { did: old.did }), 200).body).toMatchObject({ active: true })
  }, 120_000)
})
