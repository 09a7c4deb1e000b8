/**
 * Logs for `wrangler tail`: one JSON line per request (request id, method,
 * NSID path, status, duration, D1 round trips, the caller's DID), read from
 * wrangler dev's output; the id in each line is the `x-request-id` the client
 * got, including on a 500, whose cause is logged under the same id while
 * the client sees no internals. Nothing secret is ever logged.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { type PdsProcess, startPds, stopPds } from './harness'
import { lineFor, logLines } from './helpers/request-log'
import { usePds } from './use-pds'
import { expectStatus, post, xget, xpost } from './xrpc-client'

describe('a healthy PDS', () => {
  let pds: PdsProcess
  let token: string
  usePds((started, accessJwt) => {
    pds = started
    token = accessJwt
  })

  test('one line per request with method, NSID, status, duration, D1 round trips and caller', async () => {
    const describe = expectStatus(await xget(pds, 'com.atproto.server.describeServer'), 200)
    const create = expectStatus(await xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, collection: 'app.bsky.feed.post', record: post('logged') }, token), 200)
    const missing = await xget(pds, 'com.atproto.repo.getRecord', { repo: pds.did, collection: 'app.bsky.feed.post', rkey: '3zzzzzzzzzzzz' })
    expect(missing.status).toBe(400)

    const d = await lineFor(pds, describe)
    expect(d).toMatchObject({ method: 'GET', path: '/xrpc/com.atproto.server.describeServer', status: 200, d1: { queries: 0 } })
    expect(typeof d.ms).toBe('number')
    expect(d.did).toBeUndefined()

    const c = await lineFor(pds, create)
    expect(c).toMatchObject({ method: 'POST', path: '/xrpc/com.atproto.repo.createRecord', status: 200, did: pds.did })
    expect(c.d1.queries).toBeGreaterThanOrEqual(1)
    expect(c.d1.rowsWritten).toBeGreaterThan(0)

    expect(await lineFor(pds, missing)).toMatchObject({ method: 'GET', path: '/xrpc/com.atproto.repo.getRecord', status: 400 })
    // The same id is in the client's answer and in exactly one request line.
    expect(logLines(pds).filter((l) => l.requestId === create.headers.get('x-request-id') && 'status' in l).length).toBe(1)
  })

  test('no password, token or key in the logs', () => {
    const out = pds.output()
    for (const secret of [pds.password, token, pds.jwtSecret, pds.signingKeyHex]) expect(out).not.toContain(secret)
  })
})

describe('a 500', () => {
  let broken: PdsProcess
  beforeAll(async () => {
    broken = await startPds({ vars: { JWT_SECRET: 'too-short' } })
  }, 120_000)
  afterAll(async () => {
    await stopPds(broken)
  })

  test('the client gets the request id and no internals; the log has the cause under that id', async () => {
    const res = await xget(broken, 'com.atproto.server.describeServer')
    expect(res.status).toBe(500)
    expect(res.body.error).toBe('InternalServerError')
    const errorLine = await lineFor(broken, res, (l) => 'error' in l)
    expect(errorLine.error).toContain('JWT_SECRET')
    // A config error names the setting (README: Configuration), never its value nor a stack.
    expect(res.text).not.toContain('too-short')
    expect(res.text).not.toMatch(/\n\s+at /)
  })

  // loadConfig throws inside the middleware, before next(): app.onError answers
  // only after the middleware has logged, and the line must still say 500.
  test('the request line of a 500 says 500', async () => {
    const res = await xget(broken, 'com.atproto.server.describeServer')
    expect(res.status).toBe(500)
    expect(await lineFor(broken, res)).toMatchObject({ method: 'GET', path: '/xrpc/com.atproto.server.describeServer', nsid: 'com.atproto.server.describeServer', status: 500 })
  })
})
