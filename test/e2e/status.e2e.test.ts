/**
 * The status page (`GET /`) in real headless Chromium, and `npm run status`,
 * against `wrangler dev`: every value shown equals what the XRPC API (or the
 * firehose, or the repo CAR) says, nothing private appears, and a screenshot
 * is kept for a human to look at.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { TID } from '@atproto/common-web'
import { readCarWithRoot } from '@atproto/repo'
import { type Browser, chromium } from 'playwright-core'
import { logHead, type Subscriber, subscribe } from './helpers/firehose-client'
import { triggerCron } from './helpers/blobs'
import { startRelayStub } from './helpers/relay-stub'
import { type PdsProcess, REPO_ROOT } from './harness'
import { usePds } from './use-pds'
import { expectStatus, listAllRecords, post, request, xget, xpost } from './xrpc-client'

const EMAIL = 'alice-private@example.com'
const SCREENSHOT = join(REPO_ROOT, '.tmp', 'status-page.png')

const relay = startRelayStub()

let pds: PdsProcess
let token: string
let browser: Browser
let sub: Subscriber

usePds(
  (started, accessJwt) => {
    pds = started
    token = accessJwt
  },
  { vars: { PDS_EMAIL: EMAIL, RELAY_HOSTS: relay.url } },
)

beforeAll(async () => {
  const uris: string[] = []
  for (let i = 0; i < 4; i++) {
    const res = await xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, collection: 'app.bsky.feed.post', record: post(`status ${i}`) }, token)
    uris.push(expectStatus(res, 200).body.uri)
  }
  const [, , , collection, rkey] = uris[0].split('/')
  expectStatus(await xpost(pds, 'com.atproto.repo.deleteRecord', { repo: pds.did, collection, rkey }, token), 200)
  await triggerCron(pds)
  sub = await subscribe(pds)
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
}, 120_000)

afterAll(async () => {
  await sub?.close()
  await browser?.close()
  relay.stop()
})

/** The repo as getRepo serves it: block count and total block bytes. */
const carFigures = async (): Promise<{ blocks: number; bytes: number }> => {
  const car = expectStatus(await xget(pds, 'com.atproto.sync.getRepo', { did: pds.did }), 200)
  const { blocks } = await readCarWithRoot(car.bytes)
  let bytes = 0
  for (const [, b] of blocks) bytes += b.byteLength
  return { blocks: blocks.size, bytes }
}

test('the page shows exactly what the API says, in a real browser; screenshot saved', async () => {
  const page = await browser.newPage({ viewport: { width: 900, height: 1100 } })
  const errors: string[] = []
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()))
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`))
  const requests: string[] = []
  page.on('request', (r) => requests.push(r.url()))
  const res = await page.goto(`${pds.url}/`)
  expect(res?.status()).toBe(200)
  const field = async (name: string): Promise<string> => (await page.locator(`[data-field="${name}"]`).innerText()).trim()

  const repo = expectStatus(await xget(pds, 'com.atproto.repo.describeRepo', { repo: pds.did }), 200).body
  const latest = expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body
  const repoStatus = expectStatus(await xget(pds, 'com.atproto.sync.getRepoStatus', { did: pds.did }), 200).body
  const health = expectStatus(await request(pds, '/xrpc/_health'), 200).body
  const records = await listAllRecords(pds, pds.did)
  const car = await carFigures()
  const head = await logHead(pds, 0)

  expect(await field('hostname')).toBe(`localhost:${pds.port}`)
  expect(await field('handle')).toBe(`@${repo.handle}`)
  expect(await field('did')).toBe(repo.did)
  expect(repoStatus.active).toBe(true)
  expect(await field('account')).toBe('active')
  expect(await field('records')).toBe(String(records.size))
  expect(records.size).toBe(3)
  expect(await field('blocks')).toBe(String(car.blocks))
  expect(await field('bytes')).toBe(String(car.bytes))
  expect(await field('rev')).toBe(latest.rev)
  expect(await field('last-seq')).toBe(String(head))
  expect(await field('subscribers')).toBe('1')
  expect(await field('version')).toBe(health.version)
  // The last commit time is the commit's own (its rev is a TID of when it was made).
  const commitAt = Date.parse((await page.locator('[data-field="last-commit"]').getAttribute('datetime')) ?? '')
  expect(Math.abs(commitAt - TID.fromStr(latest.rev).timestamp() / 1000)).toBeLessThan(5_000)
  // The writes asked the loopback relay to crawl; the cron's run is reported.
  expect(relay.crawls.map((c) => c.path)).toContain('/xrpc/com.atproto.sync.requestCrawl')
  expect(await page.locator('[data-field="last-crawl"]').getAttribute('datetime')).toBeTruthy()
  expect(await page.locator('[data-field="maintenance-at"]').getAttribute('datetime')).toBeTruthy()

  // Self-contained: nothing fetched but the page itself, no script errors.
  expect(requests).toEqual([`${pds.url}/`])
  expect(errors).toEqual([])
  mkdirSync(join(REPO_ROOT, '.tmp'), { recursive: true })
  await page.screenshot({ path: SCREENSHOT, fullPage: true })
  console.log(`status page screenshot: ${SCREENSHOT}`)
  // On a phone: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 })
  expect(Number(await page.evaluate('document.documentElement.scrollWidth'))).toBeLessThanOrEqual(390)
  await page.screenshot({ path: SCREENSHOT.replace('.png', '-phone.png'), fullPage: true })
  await page.close()
}, 60_000)

test('a deactivated account is shown as such, with what it means; activation brings it back', async () => {
  expectStatus(await xpost(pds, 'com.atproto.server.deactivateAccount', {}, token), 200)
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } })
  expect((await page.goto(`${pds.url}/`))?.status()).toBe(200)
  expect((await page.locator('[data-field="account"]').innerText()).trim()).toBe('deactivated')
  expect(await page.locator('body').innerText()).toContain('the repo is served only to its owner')
  expect(Number(await page.evaluate('document.documentElement.scrollWidth'))).toBeLessThanOrEqual(390)
  await page.screenshot({ path: SCREENSHOT.replace('.png', '-deactivated-phone.png'), fullPage: true })
  await page.close()
  expectStatus(await xpost(pds, 'com.atproto.server.activateAccount', undefined, token), 200)
  expect(expectStatus(await request(pds, '/status.json'), 200).body.account).toEqual({ active: true, status: 'active' })
}, 60_000)

test('nothing private: no email, password, keys, tokens or client address in the page or its JSON', async () => {
  const html = (await request(pds, '/')).text
  const json = (await request(pds, '/status.json')).text
  // The relay's address is configuration, shown on purpose; the client's own address must not be.
  const relayUrl = relay.url
  for (const body of [html, json].map((b) => b.replaceAll(relayUrl, ''))) {
    for (const secret of [EMAIL, pds.password, pds.jwtSecret, pds.signingKeyHex, token, '127.0.0.1']) {
      expect(body).not.toContain(secret)
    }
  }
  const res = await request(pds, '/')
  expect(res.headers.get('content-security-policy')).toContain("default-src 'none'")
  expect(res.headers.get('cache-control')).toBe('no-store')
}, 60_000)

test('the JSON form: /status.json and GET / with Accept: application/json; a new write shows at once', async () => {
  const before = expectStatus(await request(pds, '/status.json'), 200).body
  const negotiated = expectStatus(await request(pds, '/', { headers: { accept: 'application/json' } }), 200).body
  expect({ ...negotiated, generatedAt: null }).toEqual({ ...before, generatedAt: null })
  expectStatus(await xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, collection: 'app.bsky.feed.post', record: post('one more') }, token), 200)
  const after = expectStatus(await request(pds, '/status.json'), 200).body
  expect(after.repo.records).toBe(before.repo.records + 1)
  expect(after.repo.rev > before.repo.rev).toBe(true)
  expect(after.repo.blocks).toBe((await carFigures()).blocks)
}, 60_000)

test('npm run status prints the same figures from the command line', async () => {
  const status = expectStatus(await request(pds, '/status.json'), 200).body
  const env = { ...process.env, PATH: `${join(REPO_ROOT, 'node_modules/node/bin')}:${process.env.PATH}` }
  const out = spawnSync('npm', ['run', '--silent', 'status', '--', pds.url], { cwd: REPO_ROOT, env, encoding: 'utf8' })
  expect(out.status, out.stderr).toBe(0)
  expect(out.stdout).toContain(`@${status.handle}`)
  expect(out.stdout).toContain(status.did)
  expect(out.stdout).toMatch(new RegExp(`Records\\s+${status.repo.records}\\n`))
  expect(out.stdout).toMatch(new RegExp(`Blocks\\s+${status.repo.blocks} `))
  expect(out.stdout).toContain(`rev ${status.repo.rev}`)
  expect(out.stdout).toMatch(new RegExp(`Last seq\\s+${status.firehose.lastSeq} `))
  expect(out.stdout).toMatch(/Account\s+active/)
  const asJson = spawnSync('npm', ['run', '--silent', 'status', '--', pds.url, '--json'], { cwd: REPO_ROOT, env, encoding: 'utf8' })
  expect({ ...JSON.parse(asJson.stdout), generatedAt: null }).toEqual({ ...status, generatedAt: null })
  const down = spawnSync('npm', ['run', '--silent', 'status', '--', 'http://127.0.0.1:9'], { cwd: REPO_ROOT, env, encoding: 'utf8' })
  expect(down.status).toBe(1)
  expect(down.stderr).toContain('Cannot reach http://127.0.0.1:9')
}, 60_000)
