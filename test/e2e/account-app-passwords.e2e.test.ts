/**
 * App passwords as clients use them: creating, listing and revoking them, the
 * scopes their sessions get (appPass, appPassPrivileged) and what those scopes
 * may do: no new app passwords, direct messages only when privileged, sessions
 * ended by a revoke. Rules and messages follow the reference
 * (api/com/atproto/server/createAppPassword.ts, auth-verifier.ts in
 * @atproto/pds 0.5.35).
 *
 * Wherever the reference PDS (test/peers) behaves the same, the same request
 * goes to both and the answers are compared; the servers are described in
 * helpers/account-fixture.ts.
 */
import { describe, expect, test } from 'bun:test'
import { AtpAgent } from '@atproto/api'
import type { PdsProcess } from './harness'
import type { AppViewStub } from './helpers/account-appview-stub'
import { type AccountServers, appPasswordSession, HANDLE, uniqueName, useAccountServers } from './helpers/account-fixture'
import type { Peer } from './helpers/reference-peer'
import { createSession, decodeJwt, expectStatus, expectXrpcError, request, type Session, xget, xpost } from './xrpc-client'

let pdsB: PdsProcess, stub: AppViewStub, ours: Peer, oursB: Peer
let peers: AccountServers['peers'], onBoth: AccountServers['onBoth'], expectSameError: AccountServers['expectSameError']
useAccountServers((s) => ({ pdsB, stub, ours, oursB, peers, onBoth, expectSameError } = s))

describe('app passwords', () => {
  test('createAppPassword answers name, password (xxxx-xxxx-xxxx-xxxx), createdAt, privileged, in that order', async () => {
    await onBoth(async (p) => {
      const agent = new AtpAgent({ service: p.url })
      await agent.login({ identifier: p.handle, password: p.password })
      for (const privileged of [undefined, true]) {
        const name = uniqueName('format')
        const { data } = await agent.com.atproto.server.createAppPassword({ name, privileged })
        expect(Object.keys(data)).toEqual(['name', 'password', 'createdAt', 'privileged'])
        expect(data.name).toBe(name)
        expect(data.password).toMatch(/^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$/)
        expect(data.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
        expect(Math.abs(Date.parse(data.createdAt) - Date.now())).toBeLessThan(60_000)
        expect(data.privileged).toBe(privileged === true)
      }
    })
  })

  test('listAppPasswords: newest first, without the password', async () => {
    await onBoth(async (p) => {
      const older = uniqueName('older')
      const newer = uniqueName('newer')
      expectStatus(await xpost(p, 'com.atproto.server.createAppPassword', { name: older }, p.token), 200)
      await Bun.sleep(5) // distinct createdAt milliseconds
      expectStatus(await xpost(p, 'com.atproto.server.createAppPassword', { name: newer, privileged: true }, p.token), 200)
      const res = expectStatus(await xget(p, 'com.atproto.server.listAppPasswords', undefined, p.token), 200)
      const list = res.body.passwords as { name: string; createdAt: string; privileged: boolean }[]
      for (const entry of list) expect(Object.keys(entry)).toEqual(['name', 'createdAt', 'privileged'])
      const names = list.map((e) => e.name)
      expect(names.indexOf(newer)).toBeGreaterThanOrEqual(0)
      expect(names.indexOf(newer)).toBeLessThan(names.indexOf(older))
      const times = list.map((e) => e.createdAt)
      expect(times).toEqual([...times].sort().reverse())
      expect(list.find((e) => e.name === newer)?.privileged).toBe(true)
      expect(list.find((e) => e.name === older)?.privileged).toBe(false)
    })
  })

  test('logging in with an app password gives the appPass scope (appPassPrivileged when privileged), same answer fields', async () => {
    await onBoth(async (p) => {
      const normal = await appPasswordSession(p, uniqueName('scope'))
      const privileged = await appPasswordSession(p, uniqueName('scope-priv'), true)
      expect(decodeJwt(normal.session.accessJwt).scope).toBe('com.atproto.appPass')
      expect(decodeJwt(privileged.session.accessJwt).scope).toBe('com.atproto.appPassPrivileged')
      const owner = await createSession(p, p.handle, p.password)
      expect(decodeJwt(owner.accessJwt).scope).toBe('com.atproto.access')
      // Nothing in the answer tells an app-password login apart.
      expect(Object.keys(normal.session)).toEqual(Object.keys(owner))
      // The official client logs in with it like with any password.
      const agent = new AtpAgent({ service: p.url })
      await agent.login({ identifier: p.handle, password: normal.password })
      expect(agent.session?.did).toBe(p.did)
      expect(decodeJwt(agent.session?.accessJwt ?? '').scope).toBe('com.atproto.appPass')
    })
  })

  test('an app-password session cannot create app passwords (400 InvalidToken "Bad token scope"), even privileged', async () => {
    const sessions = new Map<Peer, Session[]>()
    for (const p of peers()) {
      sessions.set(p, [(await appPasswordSession(p, uniqueName('no-create'))).session, (await appPasswordSession(p, uniqueName('no-create-p'), true)).session])
    }
    for (const i of [0, 1]) {
      await expectSameError(
        (p) => xpost(p, 'com.atproto.server.createAppPassword', { name: uniqueName('nested') }, sessions.get(p)?.[i]?.accessJwt),
        400,
        'InvalidToken',
        'Bad token scope',
      )
    }
  })

  test('direct messages: an app password gets "Bad token method", a privileged one reaches the (unreachable) AppView', async () => {
    const sessions = new Map<Peer, { normal: Session; privileged: Session }>()
    for (const p of peers()) {
      sessions.set(p, {
        normal: (await appPasswordSession(p, uniqueName('chat'))).session,
        privileged: (await appPasswordSession(p, uniqueName('chat-priv'), true)).session,
      })
    }
    const listConvos = (token?: string) => (p: Peer) => xget(p, 'chat.bsky.convo.listConvos', {}, token ?? p.token)
    await expectSameError((p) => listConvos(sessions.get(p)?.normal.accessJwt)(p), 400, 'InvalidToken', 'Bad token method')
    await expectSameError((p) => listConvos(sessions.get(p)?.privileged.accessJwt)(p), 502, 'UpstreamFailure', 'Upstream service unreachable')
    await expectSameError(listConvos(), 502, 'UpstreamFailure', 'Upstream service unreachable')
  })

  test('a privileged app password reaches a live AppView with a service token; an ordinary one never does', async () => {
    const normal = await appPasswordSession(oursB, uniqueName('stub-chat'))
    const privileged = await appPasswordSession(oursB, uniqueName('stub-chat-priv'), true)
    stub.clear()
    expectXrpcError(await xget(oursB, 'chat.bsky.convo.listConvos', {}, normal.session.accessJwt), 400, 'InvalidToken', 'Bad token method')
    expect(stub.requests).toEqual([])
    const res = expectStatus(await xget(oursB, 'chat.bsky.convo.listConvos', { limit: 5 }, privileged.session.accessJwt), 200)
    expect(res.body).toEqual({ ok: true, nsid: 'chat.bsky.convo.listConvos' })
    expect(stub.requests.map((r) => r.path)).toEqual(['/xrpc/chat.bsky.convo.listConvos?limit=5'])
    const jwt = (stub.requests[0]?.headers.authorization ?? '').replace(/^Bearer /, '')
    expect(jwt).not.toBe(privileged.session.accessJwt)
    expect(decodeJwt(jwt)).toMatchObject({ iss: pdsB.did, aud: stub.did, lxm: 'chat.bsky.convo.listConvos' })
  })

  test("revokeAppPassword ends that password's sessions (refresh: 400 ExpiredToken) and login; the owner is unaffected", async () => {
    const gone = new Map<Peer, { password: string; session: Session }>()
    const owner = new Map<Peer, Session>()
    for (const p of peers()) {
      const name = uniqueName('revoke')
      gone.set(p, await appPasswordSession(p, name))
      owner.set(p, await createSession(p, p.handle, p.password))
      expectStatus(await xpost(p, 'com.atproto.server.revokeAppPassword', { name }, p.token), 200)
      const list = expectStatus(await xget(p, 'com.atproto.server.listAppPasswords', undefined, p.token), 200)
      expect((list.body.passwords as { name: string }[]).map((e) => e.name)).not.toContain(name)
    }
    await expectSameError(
      (p) => xpost(p, 'com.atproto.server.refreshSession', undefined, gone.get(p)?.session.refreshJwt),
      400,
      'ExpiredToken',
      'Token has been revoked',
    )
    await expectSameError(
      (p) => xpost(p, 'com.atproto.server.createSession', { identifier: p.handle, password: gone.get(p)?.password }),
      401,
      'AuthenticationRequired',
      'Invalid identifier or password',
    )
    await onBoth(async (p) => {
      // Ours ends the access token on its next request; the reference's lives until it expires (two hours).
      const stale = await xget(p, 'com.atproto.server.getSession', undefined, gone.get(p)?.session.accessJwt)
      if (p.name === 'ours') expectXrpcError(stale, 400, 'ExpiredToken', 'Token has been revoked')
      else expectStatus(stale, 200)
      expectStatus(await xget(p, 'com.atproto.server.getSession', undefined, owner.get(p)?.accessJwt), 200)
      const refreshed = expectStatus(await xpost(p, 'com.atproto.server.refreshSession', undefined, owner.get(p)?.refreshJwt), 200)
      expect(decodeJwt(refreshed.body.accessJwt).scope).toBe('com.atproto.access')
      // Revoking a name that does not exist is a silent success.
      expectStatus(await xpost(p, 'com.atproto.server.revokeAppPassword', { name: uniqueName('never-made') }, p.token), 200)
    })
  })

  test('refreshing an app-password session keeps its scope', async () => {
    await onBoth(async (p) => {
      for (const [privileged, scope] of [[false, 'com.atproto.appPass'], [true, 'com.atproto.appPassPrivileged']] as const) {
        let { refreshJwt } = (await appPasswordSession(p, uniqueName('refresh'), privileged)).session
        for (let i = 0; i < 2; i++) {
          const res = expectStatus(await xpost(p, 'com.atproto.server.refreshSession', undefined, refreshJwt), 200)
          expect(decodeJwt(res.body.accessJwt).scope).toBe(scope)
          refreshJwt = res.body.refreshJwt
        }
      }
    })
  })

  test('an app password may list and revoke app passwords (ACCESS_STANDARD, as the reference)', async () => {
    await onBoth(async (p) => {
      const victim = uniqueName('victim')
      expectStatus(await xpost(p, 'com.atproto.server.createAppPassword', { name: victim }, p.token), 200)
      const { session } = await appPasswordSession(p, uniqueName('lister'))
      const list = expectStatus(await xget(p, 'com.atproto.server.listAppPasswords', undefined, session.accessJwt), 200)
      expect((list.body.passwords as { name: string }[]).map((e) => e.name)).toContain(victim)
      expectStatus(await xpost(p, 'com.atproto.server.revokeAppPassword', { name: victim }, session.accessJwt), 200)
      const after = expectStatus(await xget(p, 'com.atproto.server.listAppPasswords', undefined, p.token), 200)
      expect((after.body.passwords as { name: string }[]).map((e) => e.name)).not.toContain(victim)
    })
  })

  test('a duplicate name is a 400 and leaves the first password working', async () => {
    // Not compared: the reference answers 500 InternalServerError here (its
    // SQLite primary-key error escapes), which no client can act on.
    const name = uniqueName('dup')
    const first = await appPasswordSession(ours, name)
    const res = await xpost(ours, 'com.atproto.server.createAppPassword', { name }, ours.token)
    expectXrpcError(res, 400, 'InvalidRequest', /already exists/)
    const list = expectStatus(await xget(ours, 'com.atproto.server.listAppPasswords', undefined, ours.token), 200)
    expect((list.body.passwords as { name: string }[]).filter((e) => e.name === name)).toHaveLength(1)
    expect((await createSession(ours, HANDLE, first.password)).did).toBe(ours.did)
  })
})

describe('signing out takes effect on the very next request', () => {
  // pdsB forwards to the stub AppView, so forwarded calls are covered too.
  const calls = (token: string) => ({
    localQuery: () => xget(oursB, 'com.atproto.server.getSession', undefined, token),
    forwardedQuery: () => xget(oursB, 'app.bsky.feed.getTimeline', { limit: 1 }, token),
    forwardedProcedure: () => xpost(oursB, 'app.bsky.notification.updateSeen', { seenAt: new Date().toISOString() }, token),
    procedure: () => xpost(oursB, 'app.bsky.actor.putPreferences', { preferences: [] }, token),
    upload: () => request(oursB, '/xrpc/com.atproto.repo.uploadBlob', { method: 'POST', body: new Uint8Array([1, 2, 3]), headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' } }),
    createRecord: () =>
      xpost(oursB, 'com.atproto.repo.createRecord', { repo: oursB.did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'after sign-out', createdAt: new Date().toISOString() } }, token),
    putRecord: () =>
      xpost(oursB, 'com.atproto.repo.putRecord', { repo: oursB.did, collection: 'app.bsky.actor.profile', rkey: 'self', record: { $type: 'app.bsky.actor.profile', displayName: 'after sign-out' } }, token),
    deleteRecord: () => xpost(oursB, 'com.atproto.repo.deleteRecord', { repo: oursB.did, collection: 'app.bsky.feed.post', rkey: '3jzfcijpj2z2a' }, token),
    applyWrites: () =>
      xpost(oursB, 'com.atproto.repo.applyWrites', { repo: oursB.did, writes: [{ $type: 'com.atproto.repo.applyWrites#delete', collection: 'app.bsky.feed.post', rkey: '3jzfcijpj2z2a' }] }, token),
  })
  const head = async () => (await xget(oursB, 'com.atproto.sync.getLatestCommit', { did: oursB.did })).body

  const expectAllRefused = async (token: string) => {
    const before = await head()
    stub.clear()
    for (const [name, call] of Object.entries(calls(token))) {
      const res = await call()
      expect({ name, status: res.status, body: res.body }).toEqual({ name, status: 400, body: { error: 'ExpiredToken', message: 'Token has been revoked' } })
    }
    // Nothing was committed and no procedure reached the AppView.
    expect(await head()).toEqual(before)
    expect(stub.requests.filter((r) => r.path.includes('updateSeen'))).toEqual([])
  }

  test('a live session can make every kind of call (the check below can fail)', async () => {
    const s = await createSession(oursB, HANDLE, oursB.password)
    for (const [name, call] of Object.entries(calls(s.accessJwt))) {
      const res = await call()
      expect({ name, ok: res.status < 500 && (res.body as { error?: string } | undefined)?.error !== 'ExpiredToken' }).toEqual({ name, ok: true })
    }
  })

  test('deleteSession: its access token is refused at once, other sessions are not', async () => {
    const s = await createSession(oursB, HANDLE, oursB.password)
    const other = await createSession(oursB, HANDLE, oursB.password)
    expectStatus(await xpost(oursB, 'com.atproto.server.deleteSession', undefined, s.refreshJwt), 200)
    await expectAllRefused(s.accessJwt)
    expectStatus(await xget(oursB, 'com.atproto.server.getSession', undefined, other.accessJwt), 200)
  })

  test('a refreshed session: signing out ends the old and the new access tokens, and the rotated refresh token cannot bring it back', async () => {
    const s = await createSession(oursB, HANDLE, oursB.password)
    const next = expectStatus(await xpost(oursB, 'com.atproto.server.refreshSession', undefined, s.refreshJwt), 200).body
    expect(decodeJwt(next.accessJwt).sid).toBe(decodeJwt(s.accessJwt).sid)
    expectStatus(await xpost(oursB, 'com.atproto.server.deleteSession', undefined, next.refreshJwt), 200)
    expectXrpcError(await xget(oursB, 'com.atproto.server.getSession', undefined, s.accessJwt), 400, 'ExpiredToken', 'Token has been revoked')
    expectXrpcError(await xget(oursB, 'com.atproto.server.getSession', undefined, next.accessJwt), 400, 'ExpiredToken', 'Token has been revoked')
    // The first refresh token was still in its grace period: it is gone with the session.
    expectXrpcError(await xpost(oursB, 'com.atproto.server.refreshSession', undefined, s.refreshJwt), 400, 'ExpiredToken', 'Token has been revoked')
  })

  test("revokeAppPassword: that password's access tokens are refused at once, for every kind of call", async () => {
    const name = uniqueName('signout')
    const { session } = await appPasswordSession(oursB, name)
    expectStatus(await xpost(oursB, 'com.atproto.server.revokeAppPassword', { name }, oursB.token), 200)
    await expectAllRefused(session.accessJwt)
  })
})
