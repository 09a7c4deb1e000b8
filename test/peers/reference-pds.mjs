// The "reference PDS oracle": the official @atproto/pds plus an in-memory @did-plc/server, both on
// loopback, with one account. Tests and benchmarks compare our PDS's behaviour against it.
//
//   In-process (the caller must run on Node >= 22; Bun is no supported host for @atproto/pds):
//     const ref = await startReferencePds({ handle: 'alice.test', password: 'hunter2' })
//     ... ref.url, ref.plcUrl, ref.did, ref.handle, ref.password, ref.accessJwt ...
//     await ref.stop()
//   As a child process (works from Bun or Node 20 test runners): spawnReferencePds(opts), same shape.
//   CLI: node test/peers/reference-pds.mjs  -> prints one JSON line, runs until SIGINT/SIGTERM.
//
// Nothing here needs the network: PLC is in memory, there is no email, no relay/crawler, no AppView.
import { randomBytes } from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, isMainModule, listenOnLoopback, spawnPeer, stopOnExitSignals } from '../shared/peer-process.mjs'
import { ensureInstalled } from './ensure-installed.mjs'

/**
 * @param {object} [opts]
 * @param {string} [opts.handle='alice.test']  must end in `.test` (the PDS's handle domain on localhost)
 * @param {string} [opts.password='alice-password']
 * @param {string} [opts.email]  defaults to `<first label of handle>@example.com`
 * @param {number} [opts.port]  PDS port; a free one by default
 * @param {string} [opts.plcUrl]  use this PLC directory instead of starting an in-memory one
 * @param {object} [opts.env]  extra @atproto/pds ServerEnvironment fields (see its config/env.d.ts), applied last
 * @returns {Promise<{url: string, plcUrl: string, did: string, handle: string, password: string,
 *   email: string, accessJwt: string, refreshJwt: string, dataDir: string, pds: object, stop: () => Promise<void>}>}
 */
export async function startReferencePds(opts = {}) {
  // Import lazily: on a fresh clone the packages only exist after ensureInstalled().
  await ensureInstalled()
  const { PDS, envToCfg, envToSecrets } = await import('@atproto/pds')
  const handle = opts.handle ?? 'alice.test'
  const password = opts.password ?? 'alice-password'
  // The PDS validates emails against the IANA TLD list, so `@alice.test` would be refused.
  const email = opts.email ?? `${handle.split('.')[0]}@example.com`
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'reference-pds-'))
  const cleanups = [() => fs.rm(dataDir, { recursive: true, force: true })]
  const stop = async () => {
    while (cleanups.length) await cleanups.pop()().catch(() => {})
  }

  try {
    let plcUrl = opts.plcUrl
    if (!plcUrl) {
      // @did-plc/server is CommonJS; its mock database keeps every operation in memory.
      const { PlcServer, Database } = (await import('@did-plc/server')).default
      const plc = PlcServer.create({ db: Database.mock(), port: 0 })
      listenOnLoopback(plc.app)
      const server = await plc.start()
      cleanups.push(() => plc.destroy())
      // `localhost`, not 127.0.0.1: the PDS's fetch refuses IP-literal hosts even in dev mode.
      plcUrl = `http://localhost:${server.address().port}`
    }

    // The PDS must know its port before it exists (its public URL and did:web are built from it).
    const port = opts.port ?? (await freePort())
    const env = {
      port,
      hostname: 'localhost', // => public URL http://localhost:<port>, did:web:localhost, handles *.test
      devMode: true, // http:// URLs, no SSRF protection against loopback, dev OAuth clients
      dataDirectory: dataDir, // account, sequencer, did-cache SQLite files and per-actor stores
      blobstoreDiskLocation: path.join(dataDir, 'blobs'),
      blobstoreDiskTmpLocation: path.join(dataDir, 'blobs-tmp'),
      didPlcUrl: plcUrl,
      inviteRequired: false,
      crawlers: [], // never notify a relay
      rateLimitsEnabled: false,
      // bskyAppViewUrl, modServiceUrl, emailSmtpUrl stay unset: no AppView, no moderation, no mail.
      jwtSecret: randomBytes(16).toString('hex'),
      adminPassword: 'admin-pass',
      // Any 32 random bytes are a valid secp256k1 private key (with overwhelming probability).
      plcRotationKeyK256PrivateKeyHex: randomBytes(32).toString('hex'),
      ...opts.env,
    }
    // envToCfg/envToSecrets apply the PDS's own defaults, exactly as its Docker entrypoint would.
    const pds = await PDS.create(envToCfg(env), envToSecrets(env))
    listenOnLoopback(pds.app)
    await pds.start()
    cleanups.push(() => pds.destroy())
    const url = pds.ctx.cfg.service.publicUrl

    // Create the account through the public API, as any client would (it registers a did:plc).
    const res = await fetch(`${url}/xrpc/com.atproto.server.createAccount`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ handle, email, password }),
    })
    const body = await res.json()
    if (!res.ok) throw new Error(`createAccount failed: ${res.status} ${JSON.stringify(body)}`)

    return {
      url, plcUrl, did: body.did, handle: body.handle, password, email,
      accessJwt: body.accessJwt, refreshJwt: body.refreshJwt, dataDir,
      pds, // the live PDS instance (pds.ctx...), for white-box checks in-process
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}

/**
 * Runs the reference PDS in a child Node 22 process (this file as CLI) and returns the same fields
 * as startReferencePds (without `pds`). Use it from Bun or Node 20, which cannot host @atproto/pds.
 * `opts` accepts handle, password, email, port, plcUrl, env; plus `timeoutMs` (default 60 s) and
 * `processEnv`, variables for the child process itself (e.g. LOG_ENABLED and LOG_DESTINATION, which
 * the reference's logger reads when it is first imported, not from its ServerEnvironment).
 */
export async function spawnReferencePds(opts = {}) {
  const { node } = await ensureInstalled() // here rather than in the child, so its time isn't in timeoutMs
  const { processEnv = {}, ...rest } = opts
  return spawnPeer({
    name: 'reference-pds',
    node,
    script: fileURLToPath(import.meta.url),
    env: { ...processEnv, REFERENCE_PDS_OPTS: JSON.stringify(rest) },
    isReady: (line) => line.startsWith('{'),
    timeoutMs: opts.timeoutMs ?? 60_000,
  })
}

// CLI: start, print one JSON line (stdout), stop cleanly on SIGINT/SIGTERM (or stdin EOF when spawned).
if (isMainModule(import.meta.url)) {
  const opts = JSON.parse(process.env.REFERENCE_PDS_OPTS || '{}')
  const t0 = performance.now()
  const ref = await startReferencePds(opts)
  const { url, plcUrl, did, handle, password, email, accessJwt, refreshJwt, dataDir } = ref
  const startupMs = Math.round(performance.now() - t0)
  console.log(JSON.stringify({ url, plcUrl, did, handle, password, email, accessJwt, refreshJwt, dataDir, pid: process.pid, startupMs }))
  stopOnExitSignals(ref.stop)
}
