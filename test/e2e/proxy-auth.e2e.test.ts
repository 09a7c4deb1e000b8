/**
 * XRPC proxying ("pipethrough") end to end, who may proxy and for whom the
 * service token is: the echo services accept only a correctly signed token for
 * their own DID and method; the PDS refuses missing, wrong and expired tokens
 * and protected methods before forwarding; app passwords reach chat.bsky.*
 * only when privileged; createReport goes to the moderation service and getFeed
 * is addressed to the feed generator (pipethrough.js, api/app/bsky/feed/
 * getFeed.js, api/com/atproto/moderation/createReport.js in @atproto/pds 0.5.35).
 *
 * Every request also goes to the reference PDS (helpers/proxy-fixture.ts):
 * each expectation is checked against both servers, so a drift of the
 * reference shows up as a failure labelled [ref]. What is forwarded, and how,
 * is proxy-forwarding.e2e.test.ts.
 */
import { describe, expect, test } from 'bun:test'
import { Secp256k1Keypair } from '@atproto/crypto'
import { createServiceJwt } from '@atproto/xrpc-server'
import type { PdsProcess } from './harness'
import type { EchoService } from './helpers/echo-service'
import { expectForwarded, type ProxyServers, send, useProxyServers } from './helpers/proxy-fixture'
import type { Peer } from './helpers/reference-peer'
import { createSession, decodeJwt, expectStatus, expectXrpcError, request, signHs256, xget, xpost } from './xrpc-client'

let appView: EchoService, second: EchoService, split: EchoService, pds: PdsProcess, ours: Peer
let onBoth: ProxyServers['onBoth'], capture: ProxyServers['capture']
useProxyServers((s) => ({ appView, second, split, pds, ours, onBoth, capture } = s))

describe('the echo service checks tokens like a real service', () => {
  const mint = async (over: Partial<{ aud: string; lxm: string; exp: number; key: string }> = {}): Promise<string> =>
    createServiceJwt({
      iss: pds.did,
      aud: over.aud ?? appView.did,
      lxm: over.lxm ?? 'com.example.echo.ping',
      exp: over.exp,
      keypair: await Secp256k1Keypair.import(over.key ?? pds.signingKeyHex),
    })
  const ping = (jwt?: string) =>
    request({ url: appView.url }, '/xrpc/com.example.echo.ping', { headers: jwt ? { authorization: `Bearer ${jwt}` } : {} })

  test("accepts a token signed with the account key, resolved from the PDS's own DID document", async () => {
    const res = expectStatus(await ping(await mint()), 200)
    expect(res.body.jwtPayload).toMatchObject({ iss: pds.did, aud: appView.did, lxm: 'com.example.echo.ping' })
    expect(appView.requests.at(-1)?.issuerKey).toBe(pds.didKey)
  })

  test('refuses a wrong lxm, another audience, an expired token, another key, and no token', async () => {
    const other = Buffer.from(await (await Secp256k1Keypair.create({ exportable: true })).export()).toString('hex')
    expectXrpcError(await ping(await mint({ lxm: 'com.example.echo.other' })), 401, 'BadJwtLexiconMethod')
    expectXrpcError(await ping(await mint({ aud: second.did })), 401, 'BadJwtAudience')
    expectXrpcError(await ping(await mint({ exp: Math.floor(Date.now() / 1000) - 5 })), 401, 'JwtExpired')
    expectXrpcError(await ping(await mint({ key: other })), 401, 'BadJwtSignature')
    expectXrpcError(await ping(), 401, 'AuthMissing')
  })
})

describe('authentication', () => {
  test('no token: 401 AuthMissing, nothing forwarded', async () => {
    await onBoth(async (p) => {
      const variants: Record<string, string>[] = [{}, { 'atproto-proxy': `${second.did}#echo` }]
      for (const headers of variants) {
        const { res, seen } = await capture(() => send(p, 'app.bsky.feed.searchPosts', { token: null, headers }))
        expectXrpcError(res, 401, 'AuthMissing', 'Authentication Required')
        expect(seen).toEqual([])
      }
    })
  })

  test('a garbage token, a refresh token, a service token: 400 InvalidToken, nothing forwarded', async () => {
    await onBoth(async (p) => {
      const refresh = (await createSession(p, p.handle, p.password)).refreshJwt
      const svc = expectStatus(await xget(p, 'com.atproto.server.getServiceAuth', { aud: appView.did, lxm: 'app.bsky.feed.searchPosts' }, p.token), 200).body.token
      for (const token of ['garbage', refresh, svc]) {
        const { res, seen } = await capture(() => send(p, 'app.bsky.feed.searchPosts', { token }))
        expectXrpcError(res, 400, 'InvalidToken', 'Token could not be verified')
        expect(seen).toEqual([])
      }
    })
  })

  test('an expired access token: 400 ExpiredToken, nothing forwarded (ours: signed with its session secret)', async () => {
    const claims = decodeJwt(ours.token)
    const expired = signHs256(
      pds.jwtSecret,
      { ...claims, iat: claims.iat - 7200, exp: Math.floor(Date.now() / 1000) - 10 },
      { typ: 'at+jwt' },
    )
    const { res, seen } = await capture(() => send(ours, 'app.bsky.feed.searchPosts', { token: expired }))
    expectXrpcError(res, 400, 'ExpiredToken', 'Token has expired')
    expect(seen).toEqual([])
  })

  test('a protected account method is never forwarded: 400 InvalidToken "Bad token method"', async () => {
    // The reference serves admin.sendEmail itself; its catch-all refuses the
    // PROTECTED_METHODS list before auth (pipethrough.js). A single-user PDS
    // without e-mail does not serve it, so the catch-all rule applies.
    const { res, seen } = await capture(() =>
      send(ours, 'com.atproto.admin.sendEmail', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }),
    )
    expectXrpcError(res, 400, 'InvalidToken', 'Bad token method')
    expect(seen).toEqual([])
  })
})

describe('app passwords', () => {
  const appSession = async (p: Peer, name: string, privileged: boolean): Promise<string> => {
    const created = expectStatus(await xpost(p, 'com.atproto.server.createAppPassword', { name, privileged }, p.token), 200)
    expect(created.body).toMatchObject({ name, privileged })
    return (await createSession(p, p.handle, created.body.password)).accessJwt
  }
  const chat = (p: Peer, token: string) =>
    capture(() => send(p, 'chat.bsky.convo.listConvos', { token, headers: { 'atproto-proxy': `${second.did}#bsky_chat` } }))

  test('an ordinary app password reaches the AppView but not chat.bsky.*', async () => {
    await onBoth(async (p) => {
      const token = await appSession(p, 'plain', false)
      const { res, seen } = await capture(() => send(p, 'app.bsky.feed.searchPosts', { token, query: '?q=a' }))
      expectStatus(res, 200)
      expectForwarded(seen, appView, p, 'app.bsky.feed.searchPosts')
      for (const call of [() => chat(p, token), () => capture(() => send(p, 'chat.bsky.convo.listConvos', { token }))]) {
        const refused = await call()
        expectXrpcError(refused.res, 400, 'InvalidToken', 'Bad token method')
        expect(refused.seen).toEqual([])
      }
    })
  })

  test('a privileged app password and the account password reach chat.bsky.*', async () => {
    await onBoth(async (p) => {
      for (const token of [await appSession(p, 'privileged', true), p.token]) {
        const { res, seen } = await chat(p, token)
        expectStatus(res, 200)
        const got = expectForwarded(seen, second, p, 'chat.bsky.convo.listConvos')
        expect({ aud: got.jwtPayload?.aud, lxm: got.jwtPayload?.lxm }).toEqual({ aud: second.did, lxm: 'chat.bsky.convo.listConvos' })
      }
    })
  })
})

describe('createReport goes to the moderation service', () => {
  test('aud = the moderation DID, lxm = createReport, the report as sent, the answer passed back', async () => {
    const report = (p: Peer) => ({
      reasonType: 'com.atproto.moderation.defs#reasonSpam',
      reason: 'echo test',
      subject: { $type: 'com.atproto.admin.defs#repoRef', did: p.did },
    })
    appView.script('com.atproto.moderation.createReport', (req) => ({
      json: { id: 7, ...(req.bodyJson as object), reportedBy: req.jwtPayload?.iss, createdAt: '2026-11-23T12:00:00.000Z' },
    }))
    await onBoth(async (p) => {
      const { res, seen } = await capture(() => xpost(p, 'com.atproto.moderation.createReport', report(p), p.token))
      expectStatus(res, 200)
      const got = expectForwarded(seen, appView, p, 'com.atproto.moderation.createReport')
      expect({ aud: got.jwtPayload?.aud, body: got.bodyJson }).toEqual({ aud: appView.did, body: report(p) })
      expect(res.body).toEqual({ id: 7, ...report(p), reportedBy: p.did, createdAt: '2026-11-23T12:00:00.000Z' })
    })
    appView.unscript()
  })
})

describe('getFeed is addressed to the feed generator', () => {
  const feedFor = async (p: Peer, rkey: string): Promise<string> => {
    const uri = `at://${p.did}/app.bsky.feed.generator/${rkey}`
    // The record lives in the account's repo and, as indexed, at the AppView.
    const record = { $type: 'app.bsky.feed.generator', did: second.did, displayName: 'Echo', createdAt: new Date().toISOString() }
    expectStatus(await xpost(p, 'com.atproto.repo.putRecord', { repo: p.did, collection: 'app.bsky.feed.generator', rkey, record }, p.token), 200)
    appView.addFeed(uri, second.did)
    return uri
  }

  test('sent to the AppView with aud = the generator DID, lxm = getFeedSkeleton', async () => {
    appView.expectToken('app.bsky.feed.getFeed', { aud: second.did, lxm: 'app.bsky.feed.getFeedSkeleton' })
    await onBoth(async (p) => {
      const uri = await feedFor(p, 'echo-feed')
      const { res, seen } = await capture(() => xget(p, 'app.bsky.feed.getFeed', { feed: uri, limit: 5 }, p.token))
      expectStatus(res, 200)
      const feedCalls = seen.filter((r) => r.nsid === 'app.bsky.feed.getFeed')
      expect(feedCalls.length).toBe(1)
      const got = expectForwarded(feedCalls, appView, p, 'app.bsky.feed.getFeed')
      expect({ aud: got.jwtPayload?.aud, lxm: got.jwtPayload?.lxm, query: got.query }).toEqual({
        aud: second.did,
        lxm: 'app.bsky.feed.getFeedSkeleton',
        query: { feed: [uri], limit: ['5'] },
      })
    })
  })

  test("a feed in another repo: the generator DID comes from the AppView's copy of the record", async () => {
    const uri = 'at://did:plc:bbbbbbbbbbbbbbbbbbbbbbbb/app.bsky.feed.generator/elsewhere'
    appView.addFeed(uri, split.did)
    appView.expectToken('app.bsky.feed.getFeed', { aud: split.did, lxm: 'app.bsky.feed.getFeedSkeleton' })
    await onBoth(async (p) => {
      const { res, seen } = await capture(() => xget(p, 'app.bsky.feed.getFeed', { feed: uri }, p.token))
      expectStatus(res, 200)
      const feedCalls = seen.filter((r) => r.nsid === 'app.bsky.feed.getFeed')
      expect(expectForwarded(feedCalls, appView, p, 'app.bsky.feed.getFeed').jwtPayload?.aud).toBe(split.did)
    })
  })

  test('an unknown feed: the AppView lookup error comes back, nothing is forwarded', async () => {
    await onBoth(async (p) => {
      const uri = `at://${p.did}/app.bsky.feed.generator/no-such-feed`
      const { res, seen } = await capture(() => xget(p, 'app.bsky.feed.getFeed', { feed: uri }, p.token))
      expectXrpcError(res, 400, 'RecordNotFound')
      expect(seen.filter((r) => r.nsid === 'app.bsky.feed.getFeed')).toEqual([])
    })
  })
})
