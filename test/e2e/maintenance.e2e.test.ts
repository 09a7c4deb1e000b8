/**
 * The cron handler, run through wrangler dev's scheduled-event route
 * (`/cdn-cgi/local/scheduled`): what it deletes and what it keeps, read
 * straight from the local D1 with `wrangler d1 execute` (rows are aged the
 * same way, since nobody can wait 72 hours), plus the relay re-announce of an
 * idle PDS against a loopback relay, idempotence and per-run bounds.
 * Blob collection has its own suite (blobs-lifecycle); one case is here so
 * the report's counts are checked together.
 */
import { beforeAll, describe, expect, test } from 'bun:test'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { makeRandomBinary, pollUntil, triggerCron, uploadBlob } from './helpers/blobs'
import { subscribe } from './helpers/firehose-client'
import { type PdsProcess, REPO_ROOT } from './harness'
import { startRelayStub } from './helpers/relay-stub'
import { usePds } from './use-pds'
import { createSession, expectStatus, post, request, verifyRepoCar, xget, xpost } from './xrpc-client'

const NODE = join(REPO_ROOT, 'node_modules/node/bin/node')
const WRANGLER = join(REPO_ROOT, 'node_modules/wrangler/bin/wrangler.js')
const LONG_AGO = '2020-01-01T00:00:00.000Z'

const relay = startRelayStub()
const { crawls } = relay

let pds: PdsProcess
let token: string
usePds(
  (started, accessJwt) => {
    pds = started
    token = accessJwt
  },
  { vars: { RELAY_HOSTS: relay.url } },
)

const wrangler = (args: string[]): Promise<string> =>
  new Promise((ok, fail) => {
    const child = spawn(NODE, [WRANGLER, ...args, '--local', '--persist-to', pds.persistDir], {
      cwd: REPO_ROOT,
      env: { ...process.env, CI: 'true', WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('exit', (code) => (code === 0 ? ok(out) : fail(new Error(`wrangler ${args.join(' ')}: ${code}\n${out}${err}`))))
  })

/** Runs SQL on the PDS's local D1; returns the rows of the last statement. */
const sql = async <T = Record<string, any>>(command: string): Promise<T[]> => {
  const out = await wrangler(['d1', 'execute', 'DB', '--json', '--command', command])
  const results = JSON.parse(out.slice(out.indexOf('[')))
  return results.at(-1).results as T[]
}
const list = (values: (string | number)[]): string => values.map((v) => (typeof v === 'number' ? String(v) : `'${v}'`)).join(',')

interface Report {
  at: string
  removedBlocks: number
  deletedBlobs: number
  prunedEvents: number
  expiredTokens: number
  crawl: string
}

/** Triggers the cron and waits for its report (the status JSON shows the last run). */
const runCron = async (): Promise<Report> => {
  const before = expectStatus(await request(pds, '/status.json'), 200).body.maintenance?.at ?? null
  await triggerCron(pds)
  let report: Report | null = null
  await pollUntil(
    async () => {
      report = expectStatus(await request(pds, '/status.json'), 200).body.maintenance
      return report !== null && report.at !== before
    },
    { timeoutMs: 20_000, describe: () => `no new maintenance report (last: ${JSON.stringify(report)})` },
  )
  return report as unknown as Report
}

const createPost = async (text: string): Promise<string> =>
  expectStatus(await xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, collection: 'app.bsky.feed.post', record: post(text) }, token), 200).body.uri

describe('re-announcing to relays (cron)', () => {
  const crawlRequest = () => ({ path: '/xrpc/com.atproto.sync.requestCrawl', body: { hostname: `localhost:${pds.port}` } })
  /** Makes the last crawl request look two hours old, as if the interval had passed. */
  const age = async (): Promise<void> => {
    await wrangler(['kv', 'key', 'put', '--binding', 'CACHE', 'firehose:last-crawl-request', new Date(Date.now() - 2 * 3600_000).toISOString()])
  }

  test('first start: the genesis commit is announced once; then an idle PDS is re-announced by the cron once per interval', async () => {
    // The genesis commit is a write with no relay connected: relays are asked to crawl the new repo.
    await pollUntil(async () => crawls.length >= 1, { timeoutMs: 10_000, describe: () => 'the genesis commit did not ask the relay to crawl' })
    expect(crawls).toEqual([crawlRequest()])
    expect((await runCron()).crawl).toBe('recently requested')
    expect(crawls.length).toBe(1)

    await age()
    const first = await runCron()
    expect(first.crawl).toBe('requested')
    expect(crawls.length).toBe(2)
    expect(crawls[1]).toEqual(crawlRequest())
    const status = expectStatus(await request(pds, '/status.json'), 200).body
    expect(status.relays.lastCrawlRequest).toMatchObject({ at: first.at, trigger: 'cron', results: [{ relay: relay.url, ok: true, status: 200 }] })

    const second = await runCron()
    expect(second.crawl).toBe('recently requested')
    expect(crawls.length).toBe(2)
  }, 60_000)

  test('after the interval it asks again; not while a relay is subscribed', async () => {
    await age()
    expect((await runCron()).crawl).toBe('requested')
    expect(crawls.length).toBe(3)
    const relaySocket = await subscribe(pds)
    try {
      await age()
      expect((await runCron()).crawl).toBe('relay connected')
      expect(crawls.length).toBe(3)
    } finally {
      await relaySocket.close()
    }
  }, 60_000)
})

describe('clean-up (cron)', () => {
  let removedOld: string[]
  let removedRecent: string[]
  let live: string[]
  let seqs: number[]
  let expiredIds: string[]
  let validIds: string[]
  let oldBlobCid: string
  let freshBlobCid: string
  let report: Report

  beforeAll(async () => {
    // Blocks leave the repo: updated and deleted records, replaced MST nodes and commits.
    const uris: string[] = []
    for (let i = 0; i < 6; i++) uris.push(await createPost(`cron ${i}`))
    for (const uri of uris.slice(0, 2)) {
      const [, , , collection, rkey] = uri.split('/')
      expectStatus(await xpost(pds, 'com.atproto.repo.deleteRecord', { repo: pds.did, collection, rkey }, token), 200)
    }
    const removed = (await sql<{ cid: string }>('SELECT cid FROM block WHERE removed_at IS NOT NULL ORDER BY cid')).map((r) => r.cid)
    expect(removed.length).toBeGreaterThan(4)
    removedOld = removed.filter((_, i) => i % 2 === 0)
    removedRecent = removed.filter((_, i) => i % 2 === 1)
    live = (await sql<{ cid: string }>('SELECT cid FROM block WHERE removed_at IS NULL ORDER BY cid')).map((r) => r.cid)
    await sql(`UPDATE block SET removed_at = '${LONG_AGO}' WHERE cid IN (${list(removedOld)})`)

    // Events: the first five and the newest are aged; the newest must stay anyway (it carries the seq counter).
    seqs = (await sql<{ seq: number }>('SELECT seq FROM repo_seq ORDER BY seq')).map((r) => r.seq)
    await sql(`UPDATE repo_seq SET sequenced_at = '${LONG_AGO}' WHERE seq IN (${list([...seqs.slice(0, 5), seqs.at(-1) as number])})`)

    // Refresh tokens: two more sessions; two of all are made expired.
    await createSession(pds, pds.handle, pds.password)
    await createSession(pds, pds.handle, pds.password)
    const tokens = (await sql<{ id: string }>('SELECT id FROM refresh_token ORDER BY id')).map((r) => r.id)
    expect(tokens.length).toBe(3)
    expiredIds = tokens.slice(0, 2)
    validIds = tokens.slice(2)
    await sql(`UPDATE refresh_token SET expires_at = '${LONG_AGO}' WHERE id IN (${list(expiredIds)})`)

    // Blobs: an upload no record used, past its temporary lifetime, and a fresh one.
    oldBlobCid = (await uploadBlob(pds, token, makeRandomBinary(4321))).ref.$link
    freshBlobCid = (await uploadBlob(pds, token, makeRandomBinary(1234))).ref.$link
    await sql(`UPDATE blob SET created_at = '${LONG_AGO}' WHERE cid = '${oldBlobCid}'`)

    report = await runCron()
  }, 120_000)

  test('the report counts exactly what was due', () => {
    expect(report).toMatchObject({ removedBlocks: removedOld.length, prunedEvents: 5, expiredTokens: 2, deletedBlobs: 1 })
  }, 60_000)

  test('blocks: the aged removed ones are gone; recently removed and live blocks all stay', async () => {
    expect((await sql<{ cid: string }>('SELECT cid FROM block WHERE removed_at IS NOT NULL ORDER BY cid')).map((r) => r.cid)).toEqual(removedRecent)
    expect((await sql<{ cid: string }>('SELECT cid FROM block WHERE removed_at IS NULL ORDER BY cid')).map((r) => r.cid)).toEqual(live)
    const car = expectStatus(await xget(pds, 'com.atproto.sync.getRepo', { did: pds.did }), 200)
    expect((await verifyRepoCar(car.bytes, pds.did, pds.didKey)).records.size).toBe(4)
  }, 60_000)

  test('events: the five aged ones are gone, the newest (aged too) and the rest stay', async () => {
    expect((await sql<{ seq: number }>('SELECT seq FROM repo_seq ORDER BY seq')).map((r) => r.seq)).toEqual(seqs.slice(5))
  }, 60_000)

  test('tokens: the expired ones are gone, the valid one stays', async () => {
    expect((await sql<{ id: string }>('SELECT id FROM refresh_token ORDER BY id')).map((r) => r.id)).toEqual(validIds)
  }, 60_000)

  test('blobs: the expired upload is gone, the fresh one stays', async () => {
    const cids = (await sql<{ cid: string }>('SELECT cid FROM blob ORDER BY cid')).map((r) => r.cid)
    expect(cids).toContain(freshBlobCid)
    expect(cids).not.toContain(oldBlobCid)
  }, 60_000)

  test('idempotent: the next run finds nothing to do and changes nothing', async () => {
    const again = await runCron()
    expect(again).toMatchObject({ removedBlocks: 0, prunedEvents: 0, expiredTokens: 0, deletedBlobs: 0 })
    expect((await sql('SELECT count(*) AS n FROM block'))[0].n).toBe(live.length + removedRecent.length)
    expect((await sql('SELECT count(*) AS n FROM repo_seq'))[0].n).toBe(seqs.length - 5)
  }, 60_000)

  test('bounded: a backlog is worked off over several runs (5000 blocks, 5000 events, 1000 tokens per run)', async () => {
    const fake = (n: number, select: string): string =>
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${n}) ${select} FROM n`
    await sql(`INSERT INTO block (cid, rev, size, content, removed_rev, removed_at) ${fake(5100, `SELECT 'bafyfake' || i, '2', 1, x'00', '3', '${LONG_AGO}'`)}`)
    await sql(`INSERT INTO refresh_token (id, did, expires_at) ${fake(1100, `SELECT 'expired-' || i, '${pds.did}', '${LONG_AGO}'`)}`)
    // All events old (seq and time grow together, as in real life), then junk ones after them;
    // nothing reads the junk before it is pruned.
    await sql(`UPDATE repo_seq SET sequenced_at = '${LONG_AGO}'`)
    await sql(`INSERT INTO repo_seq (event_type, event, sequenced_at) ${fake(5100, `SELECT 'junk', x'00', '${LONG_AGO}'`)}`)
    expect(await runCron()).toMatchObject({ removedBlocks: 5000, prunedEvents: 5000, expiredTokens: 1000 })
    // The newest event stays, whatever its age.
    expect(await runCron()).toMatchObject({ removedBlocks: 100, prunedEvents: seqs.length - 5 + 5099 - 5000, expiredTokens: 100 })
    expect(await runCron()).toMatchObject({ removedBlocks: 0, prunedEvents: 0, expiredTokens: 0 })
    expect((await sql('SELECT count(*) AS n FROM repo_seq'))[0].n).toBe(1)
  }, 120_000)
})
