/**
 * Relays mark a quiet host offline and do not come back by themselves, so
 * after a write with no relay subscribed the PDS asks RELAY_HOSTS to crawl it
 * (at most once an hour). A loopback HTTP server stands in for the relay.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { type PdsProcess, startPds, stopPds } from './harness'
import { startRelayStub } from './helpers/relay-stub'
import { createSession, expectStatus, post, xpost } from './xrpc-client'

const relay = startRelayStub()
const { crawls } = relay

let pds: PdsProcess
let token: string

beforeAll(async () => {
  pds = await startPds({ vars: { RELAY_HOSTS: relay.url } })
  token = (await createSession(pds, pds.handle, pds.password)).accessJwt
}, 120_000)

afterAll(async () => {
  await stopPds(pds)
  relay.stop()
})

const waitFor = async (check: () => boolean, ms: number): Promise<boolean> => {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (check()) return true
    await Bun.sleep(50)
  }
  return check()
}

test('a write with no relay connected asks the relay to crawl this host', async () => {
  const res = await xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, collection: 'app.bsky.feed.post', record: post('hello relays') }, token)
  expectStatus(res, 200)
  expect(await waitFor(() => crawls.length > 0, 10_000)).toBe(true)
  expect(crawls[0]).toEqual({ path: '/xrpc/com.atproto.sync.requestCrawl', body: { hostname: `localhost:${pds.port}` } })
})

test('it is asked at most once an hour, however many writes follow', async () => {
  for (let i = 0; i < 3; i++) {
    expectStatus(await xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, collection: 'app.bsky.feed.post', record: post(`again ${i}`) }, token), 200)
  }
  await Bun.sleep(1000)
  expect(crawls.length).toBe(1)
})
