// A real Bluesky AppView on loopback, for the end-to-end suite that drives our PDS through its proxy:
//
//   Postgres (private cluster, temp dir, spare port, fsync off)   Redis (spare port, no persistence)
//   @did-plc/server (in memory)       TestBsync + TestBsky from @atproto/dev-env (the official @atproto/bsky)
//   a second PDS (the reference @atproto/pds via dev-env's TestPds) with a second account that has posts
//
// and, for the PDS under test (started by the caller once this is up, on a port chosen beforehand):
//   a did:plc for its account (signing key, `atproto_pds` endpoint http://localhost:<pdsPort>, handle), and
//   an AppView subscription to its firehose, started as soon as it answers /xrpc/_health, and
//   a loopback control endpoint (`controlUrl`) to pause and resume that subscription's indexing;
// and, with `extraPdsPorts`, a subscription to each further PDS of ours on those ports (e.g. one an account
// migrates to), started once it answers /xrpc/_health; the caller starts those PDSes and their accounts.
//
//   As a child process (from Bun, which cannot host @atproto/bsky or @atproto/pds):
//     const av = await spawnAppview({ pdsPort, handle: 'alice.test' })   ... av.appviewUrl ...  await av.stop()
//   CLI: APPVIEW_OPTS='{"pdsPort":1234}' node test/appview/appview.mjs
//     -> prints one JSON line (stdout), runs until SIGINT/SIGTERM (or stdin EOF when spawned).
//
// Why the AppView has one firehose subscription per PDS: dev-env's TestBsky takes a single `repoProvider`,
// normally a relay. No relay is installable here, so, as a relay would, we subscribe to each PDS: TestBsky's
// own subscription reads the second PDS, and more `RepoSubscription`s (the same class, sharing TestBsky's
// database and identity resolver) read ours. All start from cursor 0 and keep their cursor in memory, and
// each applies the relay's host rule (network-stand-ins.mjs): an account's commits, #sync and #account
// count only from the PDS its DID document names.
//
// Why handle resolution is overridden: the AppView verifies a handle by DNS or by
// https://<handle>/.well-known/atproto-did. Neither reaches `*.test` handles on loopback, so it would show
// `handle.invalid`. We answer from the PDS that hosts the handle instead, over plain HTTP with the handle
// as Host header: the same check, pointed at a known host (as dev-env's own network does); a handle whose
// account moved to one of the further PDSes is asked there too.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs/promises'
import module from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, HOST, isMainModule, listenOnLoopback, spawnPeer, stopOnExitSignals } from '../shared/peer-process.mjs'
import { appviewNode, ensureInstalled, postgresBin, redisServerBin } from './ensure-installed.mjs'
import { acceptOnlyFromCurrentHost, resolveHandlesOnLoopback } from './network-stand-ins.mjs'

const READY_TIMEOUT_MS = 60_000

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const toHex = (bytes) => Buffer.from(bytes).toString('hex')

/** Spawns a server and resolves once a line of its output matches `ready`; rejects if it exits first. */
function startDaemon(name, cmd, args, { ready, uid, gid, cwd }) {
  const child = spawn(cmd, args, { cwd, uid, gid, stdio: ['ignore', 'pipe', 'pipe'] })
  const output = []
  const up = new Promise((resolve, reject) => {
    const onData = (d) => {
      output.push(String(d))
      if (ready.test(output.join(''))) resolve()
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.once('exit', (code, signal) => reject(new Error(`${name} exited (${code ?? signal}):\n${output.join('')}`)))
    setTimeout(() => reject(new Error(`${name} not ready after ${READY_TIMEOUT_MS} ms:\n${output.join('')}`)), READY_TIMEOUT_MS).unref()
  })
  const stop = async (signal) => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((r) => child.once('exit', r))
    child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }
  return { child, up, stop, output: () => output.join('') }
}

/**
 * A throwaway Postgres cluster. Postgres refuses to run as root, so as root the cluster belongs to the
 * `postgres` user the Debian package creates. fsync and friends are off: nothing here must survive a crash.
 */
async function startPostgres(baseDir) {
  const bin = postgresBin()
  if (!bin) throw new Error('Postgres is not installed (run test/appview/ensure-installed.mjs)')
  const dir = path.join(baseDir, 'pg')
  await fs.mkdir(dir, { mode: 0o700 })
  let owner = {}
  if (process.getuid?.() === 0) {
    const { execFileSync } = await import('node:child_process')
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }))
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }))
    await fs.chown(dir, uid, gid)
    await fs.chmod(baseDir, 0o755) // the postgres user must be able to traverse into pg/
    owner = { uid, gid }
  }
  const data = path.join(dir, 'data')
  const initdb = startDaemon('initdb', path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'], {
    ready: /Success\. You can now start the database server/,
    cwd: dir,
    ...owner,
  })
  await initdb.up
  await new Promise((r) => (initdb.child.exitCode === null ? initdb.child.once('exit', r) : r()))
  const port = await freePort()
  const settings = {
    listen_addresses: HOST,
    port,
    unix_socket_directories: dir,
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: 100,
  }
  const args = ['-D', data, ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])]
  const server = startDaemon('postgres', path.join(bin, 'postgres'), args, {
    ready: /database system is ready to accept connections/,
    cwd: dir,
    ...owner,
  })
  await server.up
  // SIGINT = "fast shutdown": roll back open transactions, close connections, exit.
  return { url: `postgresql://postgres@${HOST}:${port}/postgres`, stop: () => server.stop('SIGINT') }
}

async function startRedis(baseDir) {
  const bin = redisServerBin()
  if (!bin) throw new Error('redis-server is not installed (run test/appview/ensure-installed.mjs)')
  const port = await freePort()
  const server = startDaemon('redis-server', bin, ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', baseDir], {
    ready: /Ready to accept connections/,
    cwd: baseDir,
  })
  await server.up
  return { host: `${HOST}:${port}`, stop: () => server.stop('SIGTERM') }
}

/**
 * Lets a test hold back what the AppView indexes from one subscription, to observe a PDS's answers
 * *before* the AppView has seen a write (read-after-write) without racing the ~0.5 s indexing delay.
 * Every IndexingService method a firehose event calls waits while paused (records, deletions, handles,
 * account status and the commit rev the AppView reports back as `atproto-repo-rev`), so a paused
 * AppView is exactly one that has not received the events yet; resuming lets them through in order.
 */
function holdIndexing(indexingSvc) {
  let open = Promise.resolve()
  let release = null
  for (const name of ['indexRecord', 'deleteRecord', 'indexHandle', 'setCommitLastSeen', 'updateActorStatus', 'deleteActor']) {
    const original = indexingSvc[name].bind(indexingSvc)
    indexingSvc[name] = async (...args) => {
      await open
      return original(...args)
    }
  }
  return {
    get paused() {
      return release !== null
    },
    pause() {
      if (!release) open = new Promise((r) => (release = r))
    },
    resume() {
      release?.()
      release = null
    },
  }
}

/**
 * A loopback HTTP endpoint for the test process (which cannot reach into this one):
 *   POST /our-indexing/pause | /our-indexing/resume   GET /our-indexing
 * each answering {paused, cursor} (cursor: the last firehose seq of our PDS the AppView has taken in);
 *   GET /cursors   {"<port>": cursor} for every PDS the AppView subscribes to.
 */
async function startControlServer({ gate, sub, subs }) {
  const http = await import('node:http')
  const server = http.createServer(async (req, res) => {
    const route = `${req.method} ${new URL(req.url, 'http://x').pathname}`
    if (route === 'GET /cursors') {
      const cursors = Object.fromEntries(await Promise.all([...subs].map(async ([port, s]) => [port, (await s.getCursor()) ?? null])))
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(cursors))
      return
    }
    if (route === 'POST /our-indexing/pause') gate.pause()
    else if (route === 'POST /our-indexing/resume') gate.resume()
    else if (route !== 'GET /our-indexing') {
      res.writeHead(404).end()
      return
    }
    const cursor = (await sub.getCursor()) ?? null
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ paused: gate.paused, cursor }))
  })
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, HOST, resolve))
  return {
    url: `http://${HOST}:${server.address().port}`,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

/**
 * @param {object} opts
 * @param {number} opts.pdsPort  port the PDS under test will listen on (http://127.0.0.1:<port>)
 * @param {string} [opts.handle='alice.test']  its account's handle
 * @param {{handle?: string, password?: string, posts?: string[]}} [opts.friend]  the second PDS's account
 * @param {number[]} [opts.extraPdsPorts]  ports of further PDSes of ours the AppView also subscribes to
 */
export async function startAppview(opts) {
  await ensureInstalled()
  const t0 = performance.now()
  // Milliseconds since t0 at which each part was up: reported, so a slow start can be attributed.
  const timings = {}
  const mark = (name) => {
    timings[name] = Math.round(performance.now() - t0)
  }
  // Loading dev-env (bsky, pds, ozone, bsync) takes seconds of CPU: let Postgres start meanwhile.
  const devImport = import('@atproto/dev-env')
  devImport.catch(() => {}) // awaited below; this only keeps an early failure from being "unhandled"
  const { Client: PlcClient } = await import('@did-plc/lib')
  const { PlcServer, Database: PlcDatabase } = (await import('@did-plc/server')).default
  const { Secp256k1Keypair } = await import('@atproto/crypto')
  const { AtpAgent } = await import('@atproto/api')
  const { request } = await import('undici')

  const handle = opts.handle ?? 'alice.test'
  const friend = {
    handle: opts.friend?.handle ?? 'bob.test',
    password: opts.friend?.password ?? 'bob-password-1',
    posts: opts.friend?.posts ?? ['Hello from the second PDS', 'A second post by bob'],
  }
  const pdsUrl = `http://${HOST}:${opts.pdsPort}`
  const extraPdsPorts = opts.extraPdsPorts ?? []
  const baseDir = await fs.mkdtemp(path.join(os.tmpdir(), 'appview-'))
  const cleanups = [() => fs.rm(baseDir, { recursive: true, force: true })]
  const stop = async () => {
    while (cleanups.length) {
      try {
        await cleanups.pop()()
      } catch (err) {
        console.error(`[appview] cleanup: ${err?.message ?? err}`)
      }
    }
  }

  try {
    const plc = PlcServer.create({ db: PlcDatabase.mock(), port: 0 })
    listenOnLoopback(plc.app)
    const [pg, redis, plcServer] = await Promise.all([startPostgres(baseDir), startRedis(baseDir), plc.start()])
    cleanups.push(pg.stop, redis.stop, () => plc.destroy())
    mark('postgresRedisPlc')
    const dev = await devImport
    mark('imports')
    const plcPort = plcServer.address().port
    // The AppView and the second PDS call it by name (the reference PDS refuses IP-literal hosts)...
    const plcUrl = `http://localhost:${plcPort}`

    // The account of the PDS under test: a did:plc whose atproto key is the PDS's signing key.
    const signingKey = await Secp256k1Keypair.create({ exportable: true })
    const rotationKey = await Secp256k1Keypair.create({ exportable: true })
    const did = await new PlcClient(plcUrl).createDid({
      signingKey: signingKey.did(),
      rotationKeys: [rotationKey.did()],
      handle,
      pds: `http://localhost:${opts.pdsPort}`,
      signer: rotationKey,
    })

    const bsyncApiKey = randomBytes(8).toString('hex')
    const bsync = await dev.TestBsync.create({ dbUrl: pg.url, dbSchema: 'bsync', apiKeys: [bsyncApiKey] })
    cleanups.push(() => bsync.close())
    mark('bsync')

    const friendPort = await freePort()
    const bsky = await dev.TestBsky.create({
      plcUrl,
      repoProvider: `ws://localhost:${friendPort}`,
      pdsPort: friendPort,
      dbPostgresUrl: pg.url,
      dbPostgresSchema: 'appview',
      // dev-env's BskyConfig requires it. @atproto/bsky 0.0.280 itself opens no Redis connection (no
      // client shows up in the server's CLIENT LIST), so this Redis idles today; it is here because the
      // AppView is specified with one and a bsky release that caches in Redis again will find it.
      redisHost: redis.host,
      bsyncUrl: bsync.url,
      bsyncApiKey,
    })
    cleanups.push(() => bsky.close())
    // bsync pushes mutes and notification settings into the AppView's dataplane (as dev-env's network).
    bsync.ctx.dataplaneClients = [bsky.ctx.dataplane]
    mark('bsky')
    // Each subscription takes an account's events only from its current PDS, as behind a relay.
    const onlyFromCurrentHost = (sub, port) =>
      acceptOnlyFromCurrentHost(sub.indexingSvc, bsky.dataplane.idResolver, port, (line) => console.error(`[appview] ${line}`))
    onlyFromCurrentHost(bsky.sub, friendPort) // before the second PDS exists: no event has reached it yet

    const handleHosts = new Map([
      [handle.toLowerCase(), pdsUrl],
      [friend.handle.toLowerCase(), `http://localhost:${friendPort}`],
    ])
    // Before any event flows: the dataplane indexes handles, the API server re-checks them.
    const movedTo = extraPdsPorts.map((port) => `http://${HOST}:${port}`)
    resolveHandlesOnLoopback(bsky.ctx.idResolver, handleHosts, movedTo, request)
    resolveHandlesOnLoopback(bsky.dataplane.idResolver, handleHosts, movedTo, request)

    const friendDir = path.join(baseDir, 'pds2')
    await fs.mkdir(friendDir)
    const friendPds = await dev.TestPds.create({
      port: friendPort,
      didPlcUrl: plcUrl,
      dataDirectory: friendDir,
      blobstoreDiskLocation: path.join(friendDir, 'blobs'),
      bskyAppViewUrl: bsky.url,
      bskyAppViewDid: bsky.serverDid,
    })
    cleanups.push(() => friendPds.close())
    mark('secondPds')
    const agent = new AtpAgent({ service: friendPds.url })
    await agent.createAccount({ handle: friend.handle, password: friend.password, email: `${friend.handle.split('.')[0]}@example.com` })
    const friendPosts = []
    for (const text of friend.posts) {
      const res = await agent.post({ text, createdAt: new Date().toISOString() })
      friendPosts.push({ uri: res.uri, cid: res.cid, text })
    }

    // Our PDSes start after this process reports ready: subscribe to each as soon as it is healthy, so
    // the firehose client does not sit in its reconnect backoff (1 s, 2 s, 4 s, ...) meanwhile.
    let stopped = false
    const subscribeWhenHealthy = (port) => {
      const sub = new dev.RepoSubscription({ service: `ws://${HOST}:${port}`, db: bsky.db, idResolver: bsky.dataplane.idResolver })
      onlyFromCurrentHost(sub, port)
      cleanups.push(async () => {
        stopped = true
        await sub.destroy()
      })
      void (async () => {
        while (!stopped) {
          const ok = await fetch(`http://${HOST}:${port}/xrpc/_health`, { signal: AbortSignal.timeout(2_000) }).then(
            (r) => r.ok,
            () => false,
          )
          if (ok) break
          await sleep(200)
        }
        if (!stopped) await sub.start()
      })()
      return sub
    }
    const ourSub = subscribeWhenHealthy(opts.pdsPort)
    const gate = holdIndexing(ourSub.indexingSvc)
    cleanups.push(() => gate.resume()) // before the subscription stops (cleanups run last-in first-out)
    const subs = new Map([[friendPort, bsky.sub], [opts.pdsPort, ourSub]])
    for (const port of extraPdsPorts) subs.set(port, subscribeWhenHealthy(port))

    const control = await startControlServer({ gate, sub: ourSub, subs })
    cleanups.push(control.stop)

    return {
      appviewUrl: bsky.url,
      controlUrl: control.url,
      appviewDid: bsky.serverDid,
      plcUrl,
      // ...our PDS (workerd) reaches it by IP: the PLC listens on IPv4 only, and `localhost` may mean ::1.
      plcUrlIp: `http://${HOST}:${plcPort}`,
      postgresUrl: pg.url,
      redisHost: redis.host,
      account: { did, handle, signingKeyHex: toHex(await signingKey.export()), rotationKeyHex: toHex(await rotationKey.export()) },
      // dataDir: its account.sqlite holds the codes it issues (requestPlcOperationSignature), as the reference peer's.
      friend: { url: friendPds.url, did: agent.session.did, handle: agent.session.handle, password: friend.password, posts: friendPosts, dataDir: friendDir },
      startupMs: Math.round(performance.now() - t0),
      timings,
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}

/**
 * Runs startAppview in a child Node 22 process (this file as CLI) and returns the same fields.
 * `opts` as for startAppview, plus `timeoutMs` (default 120 s, not counting a first install).
 */
export async function spawnAppview(opts) {
  await ensureInstalled() // here rather than in the child, so its time isn't in timeoutMs
  return spawnPeer({
    name: 'appview',
    node: appviewNode(),
    nodeArgs: ['--no-deprecation'],
    script: fileURLToPath(import.meta.url),
    env: { APPVIEW_OPTS: JSON.stringify(opts) },
    // The JSON line is the one starting with `{"ready":true`; anything else is passed on.
    isReady: (line) => line.startsWith('{"ready":true'),
    timeoutMs: opts.timeoutMs ?? 120_000,
  })
}

// CLI: start, print one JSON line (stdout), stop cleanly on SIGINT/SIGTERM (or stdin EOF when spawned).
if (isMainModule(import.meta.url)) {
  // Cache compiled code of the ~700 packages between runs (Node >= 22.1): a faster start after the first.
  module.enableCompileCache?.(path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules', '.cache', 'compile'))
  const opts = JSON.parse(process.env.APPVIEW_OPTS || '{}')
  if (!opts.pdsPort) opts.pdsPort = await freePort()
  const av = await startAppview(opts)
  const { stop, ...info } = av
  console.log(JSON.stringify({ ready: true, ...info, pid: process.pid }))
  stopOnExitSignals(stop)
}
