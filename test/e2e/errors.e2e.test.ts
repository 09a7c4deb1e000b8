/**
 * The error surface shared by every route: unknown methods and paths, XRPC
 * parameter/body validation, wrong HTTP methods, and CORS (the reference PDS
 * runs express `cors({ maxAge: 86400 })` in front of everything).
 */
import { describe, expect, test } from 'bun:test'
import { type PdsProcess } from './harness'
import { usePds } from './use-pds'
import { createSession, expectXrpcError, request, xget, xpost } from './xrpc-client'

let pds: PdsProcess
let token: string

usePds((started, accessJwt) => {
  pds = started
  token = accessJwt
})

describe('unknown routes', () => {
  test('an unknown XRPC method is for the AppView: unauthenticated → 401 AuthMissing (GET and POST), never forwarded', async () => {
    expectXrpcError(await xget(pds, 'com.example.doesNotExist'), 401, 'AuthMissing')
    expectXrpcError(await xpost(pds, 'com.example.doesNotExist', {}), 401, 'AuthMissing')
  })

  test('an unknown XRPC method with a verb XRPC does not have → 400', async () => {
    const res = await request(pds, '/xrpc/com.example.doesNotExist', { method: 'PUT' })
    expectXrpcError(res, 400, 'InvalidRequest', 'XRPC requests only supports GET and POST')
  })

  test('/robots.txt lets crawlers read the public API (as the reference)', async () => {
    const res = await request(pds, '/robots.txt')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toStartWith('text/plain')
    expect(res.text).toContain('User-agent: *\nAllow: /')
  })

  test('an unknown non-XRPC path → 404', async () => {
    const res = await request(pds, '/definitely/not/here')
    expect(res.status).toBe(404)
  })
})

describe('XRPC input validation', () => {
  test('a missing required param → 400 InvalidRequest', async () => {
    const res = await xget(pds, 'com.atproto.repo.getRecord', { repo: pds.did, collection: 'app.bsky.feed.post' })
    expectXrpcError(res, 400, 'InvalidRequest')
    expectXrpcError(await xget(pds, 'com.atproto.repo.listRecords', { repo: pds.did }), 400, 'InvalidRequest')
    expectXrpcError(await xget(pds, 'com.atproto.sync.getRepo'), 400, 'InvalidRequest')
  })

  test('a param of the wrong type or format → 400 InvalidRequest', async () => {
    const list = await xget(pds, 'com.atproto.repo.listRecords', { repo: pds.did, collection: 'app.bsky.feed.post', limit: 'many' })
    expectXrpcError(list, 400, 'InvalidRequest')
    expectXrpcError(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: 'not-a-did' }), 400, 'InvalidRequest')
  })

  test('a body missing a required field → 400 InvalidRequest', async () => {
    const res = await xpost(pds, 'com.atproto.repo.createRecord', { repo: pds.did, record: { a: 1 } }, token)
    expectXrpcError(res, 400, 'InvalidRequest')
  })

  test('a body that is not JSON → 400', async () => {
    const res = await request(pds, '/xrpc/com.atproto.repo.createRecord', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{"repo": ',
    })
    expect(res.status).toBe(400)
    // The reference leaks body-parser's name here ("SyntaxError"); InvalidRequest is the sane spelling.
    expect(['InvalidRequest', 'SyntaxError']).toContain(res.body?.error)
  })

  test('the wrong HTTP method → 400 InvalidRequest naming the expected one', async () => {
    expectXrpcError(
      await xget(pds, 'com.atproto.repo.createRecord', undefined, token),
      400,
      'InvalidRequest',
      'Incorrect HTTP method (GET) expected POST',
    )
    expectXrpcError(
      await xpost(pds, 'com.atproto.server.describeServer', {}),
      400,
      'InvalidRequest',
      'Incorrect HTTP method (POST) expected GET',
    )
  })

  test('error bodies are JSON {error, message}', async () => {
    const res = await xget(pds, 'com.atproto.repo.getRecord', { repo: pds.did, collection: 'app.bsky.feed.post' })
    expect(res.headers.get('content-type')).toContain('application/json')
    expect(typeof res.body.error).toBe('string')
    expect(typeof res.body.message).toBe('string')
  })
})

describe('CORS', () => {
  const origin = 'https://app.example.com'

  test('a preflight is answered with allow-origin *, the methods, the asked headers, max-age', async () => {
    const res = await request(pds, '/xrpc/com.atproto.repo.createRecord', {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type,atproto-proxy',
      },
    })
    expect(res.status).toBe(204)
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
    const methods = (res.headers.get('access-control-allow-methods') ?? '').toUpperCase()
    for (const m of ['GET', 'POST']) expect(methods).toContain(m)
    const headers = (res.headers.get('access-control-allow-headers') ?? '').toLowerCase()
    for (const h of ['authorization', 'content-type', 'atproto-proxy']) expect(headers).toContain(h)
    expect(res.headers.get('access-control-max-age')).toBe('86400')
  })

  test('simple requests and error responses carry allow-origin *', async () => {
    const ok = await request(pds, '/xrpc/com.atproto.server.describeServer', { headers: { origin } })
    expect(ok.status).toBe(200)
    expect(ok.headers.get('access-control-allow-origin')).toBe('*')
    const err = await request(pds, '/xrpc/com.atproto.repo.getRecord', { headers: { origin } })
    expect(err.status).toBe(400)
    expect(err.headers.get('access-control-allow-origin')).toBe('*')
  })
})
