/**
 * Account settings as clients use them: preferences, session fields, the email
 * methods (without an email sender), invite codes, resolveHandle, and the
 * protected methods that must never be forwarded to the AppView.
 *
 * Wherever the reference PDS (test/peers) behaves the same, the same request
 * goes to both and the answers are compared; the servers are described in
 * helpers/account-fixture.ts. App passwords are account-app-passwords.e2e.test.ts.
 */
import { describe, expect, test } from 'bun:test'
import { AtpAgent } from '@atproto/api'
import type { PdsProcess } from './harness'
import type { AppViewStub } from './helpers/account-appview-stub'
import {
  type AccountServers,
  appPasswordSession,
  FRIEND,
  HANDLE,
  OWNER_EMAIL,
  PASSWORD,
  UNREACHABLE_APPVIEW,
  uniqueName,
  useAccountServers,
} from './helpers/account-fixture'
import type { Peer, ReferencePds } from './helpers/reference-peer'
import {
  createSession,
  expectStatus,
  expectXrpcError,
  request,
  type Session,
  show,
  type XrpcResponse,
  xget,
  xpost,
} from './xrpc-client'

let pds: PdsProcess, pdsB: PdsProcess, stub: AppViewStub, refPds: ReferencePds | undefined
let ours: Peer, oursB: Peer, ref: Peer | undefined
let peers: AccountServers['peers'], onBoth: AccountServers['onBoth'], expectSameError: AccountServers['expectSameError']
useAccountServers((s) => ({ pds, pdsB, stub, refPds, ours, oursB, ref, peers, onBoth, expectSameError } = s))

/** The error part of an answer, for comparing two servers. */
const errorOf = (res: XrpcResponse) => ({ status: res.status, error: res.body?.error, message: res.body?.message })

const PERSONAL = 'app.bsky.actor.defs#personalDetailsPref'
const DECLARED_AGE = 'app.bsky.actor.defs#declaredAgePref'

/** An ISO birth date `years` (and `days`) before today, safely away from a birthday. */
const bornAgo = (years: number, days = 30): string => {
  const d = new Date()
  d.setUTCFullYear(d.getUTCFullYear() - years)
  d.setUTCDate(d.getUTCDate() - days)
  d.setUTCHours(0, 0, 0, 0)
  return d.toISOString()
}

const putPrefs = (p: Peer, preferences: unknown[], token = p.token): Promise<XrpcResponse> =>
  xpost(p, 'app.bsky.actor.putPreferences', { preferences }, token)

const getPrefs = async (p: Peer, token = p.token): Promise<unknown[]> =>
  expectStatus(await xget(p, 'app.bsky.actor.getPreferences', undefined, token), 200).body.preferences

/** Runs `scenario` on both servers; the preference lists it returns must be identical. */
const expectSamePrefs = async (scenario: (p: Peer) => Promise<unknown>): Promise<unknown> => {
  const mine = await scenario(ours)
  if (ref) expect({ ref: await scenario(ref) }).toEqual({ ref: mine })
  return mine
}

describe('preferences', () => {
  test('the reference serves preferences itself: the AppView setting is enough (a proxied call would be a 502)', async () => {
    await onBoth(async (p) => {
      expectStatus(await putPrefs(p, []), 200)
      expect(await getPrefs(p)).toEqual([])
    })
  })

  test('putPreferences then getPreferences: same values, same order (repeated types and unknown app.bsky types too)', async () => {
    const prefs = [
      { $type: 'app.bsky.actor.defs#adultContentPref', enabled: true },
      { $type: 'app.bsky.actor.defs#contentLabelPref', label: 'nsfw', visibility: 'warn' },
      { $type: 'app.bsky.actor.defs#savedFeedsPrefV2', items: [{ id: '3l6ovcmm2vd2j', type: 'timeline', value: 'following', pinned: true }] },
      { $type: 'app.bsky.actor.defs#threadViewPref', sort: 'oldest', prioritizeFollowedUsers: true },
      { $type: 'app.bsky.actor.defs#contentLabelPref', label: 'gore', visibility: 'hide', labelerDid: 'did:plc:ar7c4by46qjdydhdevvrndac' },
      { $type: 'app.bsky.actor.defs#someFuturePref', nested: { list: ['a', 'b'], n: 7, flag: false } },
    ]
    const got = await expectSamePrefs(async (p) => {
      expectStatus(await putPrefs(p, prefs), 200)
      return getPrefs(p)
    })
    expect(got).toEqual(prefs)
    // The official client reads them too.
    const agent = new AtpAgent({ service: ours.url })
    await agent.login({ identifier: HANDLE, password: PASSWORD })
    expect((await agent.app.bsky.actor.getPreferences()).data.preferences).toEqual(prefs)
  })

  test('a preference without $type, or outside app.bsky, is refused', async () => {
    await onBoth(async (p) => {
      expectStatus(await putPrefs(p, [{ $type: 'app.bsky.actor.defs#adultContentPref', enabled: false }]), 200)
    })
    // Lexicon validation of the open union runs first on both servers, so the
    // handlers' own "Preference is missing a $type" never reaches a client:
    // the answer is the validator's, word for word the same.
    await expectSameError(
      (p) => putPrefs(p, [{ enabled: true }]),
      400,
      'InvalidRequest',
      'Expected an object which includes the "$type" property value type (got {"enabled": ...}) at $.preferences[0]',
    )
    await expectSameError(
      (p) => putPrefs(p, [{ $type: 5, enabled: true }]),
      400,
      'InvalidRequest',
      'Expected string value type (got 5) at $.preferences[0].$type',
    )
    // An empty $type is outside the atproto data model: we refuse it as such, the reference by namespace.
    expectXrpcError(await putPrefs(ours, [{ $type: '', enabled: true }]), 400, 'InvalidRequest', 'Invalid data model value: Empty $type property')
    if (ref) expectXrpcError(await putPrefs(ref, [{ $type: '', enabled: true }]), 400, 'InvalidRequest', 'Some preferences are not in the app.bsky namespace')
    await expectSameError(
      (p) => putPrefs(p, [{ $type: 'app.bsky.actor.defs#adultContentPref', enabled: true }, { $type: 'com.example.pref', a: 1 }]),
      400,
      'InvalidRequest',
      'Some preferences are not in the app.bsky namespace',
    )
    // Nothing was replaced by the refused puts.
    await onBoth(async (p) => {
      expect(await getPrefs(p)).toEqual([{ $type: 'app.bsky.actor.defs#adultContentPref', enabled: false }])
    })
  })

  test('declaredAgePref is derived from the birth date, never stored, and ignored on input', async () => {
    const fourteen = { $type: PERSONAL, birthDate: bornAgo(14) }
    const adult = { $type: 'app.bsky.actor.defs#adultContentPref', enabled: false }
    const forged = { $type: DECLARED_AGE, isOverAge13: false, isOverAge16: true, isOverAge18: true }
    const withAge = await expectSamePrefs(async (p) => {
      expectStatus(await putPrefs(p, [fourteen, adult, forged]), 200)
      return getPrefs(p)
    })
    expect(withAge).toEqual([fourteen, adult, { $type: DECLARED_AGE, isOverAge13: true, isOverAge16: false, isOverAge18: false }])
    const withoutBirthDate = await expectSamePrefs(async (p) => {
      expectStatus(await putPrefs(p, [adult, forged]), 200)
      return getPrefs(p)
    })
    expect(withoutBirthDate).toEqual([adult])
  })

  test("app passwords: no personal details in or out, and their put keeps the owner's", async () => {
    const sessions = new Map<Peer, { normal: Session; privileged: Session }>()
    for (const p of peers()) {
      sessions.set(p, {
        normal: (await appPasswordSession(p, uniqueName('prefs'))).session,
        privileged: (await appPasswordSession(p, uniqueName('prefs-priv'), true)).session,
      })
    }
    const details = { $type: PERSONAL, birthDate: bornAgo(30) }
    const adult = (enabled: boolean) => ({ $type: 'app.bsky.actor.defs#adultContentPref', enabled })
    const thread = { $type: 'app.bsky.actor.defs#threadViewPref', sort: 'newest' }
    for (const which of ['normal', 'privileged'] as const) {
      await expectSameError(
        (p) => putPrefs(p, [adult(true), details], sessions.get(p)?.[which].accessJwt),
        400,
        'InvalidRequest',
        `Do not have authorization to set preferences: ${PERSONAL}`,
      )
    }
    const views = await expectSamePrefs(async (p) => {
      expectStatus(await putPrefs(p, [details, adult(true)]), 200)
      expectStatus(await putPrefs(p, [adult(false), thread], sessions.get(p)?.normal.accessJwt), 200)
      return { owner: await getPrefs(p), appPassword: await getPrefs(p, sessions.get(p)?.privileged.accessJwt) }
    })
    const age = { $type: DECLARED_AGE, isOverAge13: true, isOverAge16: true, isOverAge18: true }
    expect(views).toEqual({ owner: [details, adult(false), thread, age], appPassword: [adult(false), thread, age] })
  })
})

/** What every session answer must say about our owner (A: email set and confirmed). */
const expectAccountFields = (body: Record<string, any>, pdsUnderTest: PdsProcess, email: string | undefined, confirmed: boolean): void => {
  expect(body.did).toBe(pdsUnderTest.did)
  expect(body.handle).toBe(HANDLE)
  expect(body.email).toBe(email)
  expect('email' in body).toBe(email !== undefined)
  expect(body.emailConfirmed).toBe(confirmed)
  expect(body.active).toBe(true)
  expect('status' in body).toBe(false)
  const doc = body.didDoc
  expect(doc?.id).toBe(pdsUnderTest.did)
  expect(doc.alsoKnownAs).toContain(`at://${HANDLE}`)
  const key = (doc.verificationMethod as { id: string; publicKeyMultibase?: string }[]).find(
    (vm) => vm.id === '#atproto' || vm.id === `${pdsUnderTest.did}#atproto`,
  )
  expect(key?.publicKeyMultibase).toBe(pdsUnderTest.didKey.replace(/^did:key:/, ''))
  const service = (doc.service as { id: string; type: string; serviceEndpoint: string }[]).find(
    (s) => s.id === '#atproto_pds' || s.id === `${pdsUnderTest.did}#atproto_pds`,
  )
  expect(service).toMatchObject({ type: 'AtprotoPersonalDataServer', serviceEndpoint: pdsUnderTest.publicUrl })
}

describe('session fields', () => {
  test('createSession, getSession, refreshSession: did, handle, email, emailConfirmed, active, our did:web document', async () => {
    const created = await createSession(ours, HANDLE, PASSWORD)
    const got = expectStatus(await xget(ours, 'com.atproto.server.getSession', undefined, created.accessJwt), 200).body
    const refreshed = expectStatus(await xpost(ours, 'com.atproto.server.refreshSession', undefined, created.refreshJwt), 200).body
    for (const body of [created, got, refreshed]) expectAccountFields(body, pds, OWNER_EMAIL, true)
    // Logging in by email works as on the reference.
    expect((await createSession(ours, OWNER_EMAIL, PASSWORD)).did).toBe(pds.did)

    const b = await createSession(oursB, HANDLE, PASSWORD)
    const gotB = expectStatus(await xget(oursB, 'com.atproto.server.getSession', undefined, b.accessJwt), 200).body
    for (const body of [b, gotB]) expectAccountFields(body, pdsB, undefined, false)
    const agent = new AtpAgent({ service: pdsB.url })
    await agent.login({ identifier: HANDLE, password: PASSWORD })
    expect(agent.session).toMatchObject({ did: pdsB.did, handle: HANDLE, emailConfirmed: false, active: true })

    if (!ref) return
    // The same fields in the same order as the reference (which leaves didDoc out unless configured).
    const refCreated = await createSession(ref, ref.handle, ref.password)
    const refGot = expectStatus(await xget(ref, 'com.atproto.server.getSession', undefined, refCreated.accessJwt), 200).body
    const refRefreshed = expectStatus(await xpost(ref, 'com.atproto.server.refreshSession', undefined, refCreated.refreshJwt), 200).body
    expect((await createSession(ref, refPds?.email ?? '', PASSWORD)).did).toBe(ref.did)
    const order = (body: object) => Object.keys(body).filter((k) => k !== 'didDoc')
    expect([created, got, refreshed].map(order)).toEqual([refCreated, refGot, refRefreshed].map(order))
    for (const body of [refCreated, refGot, refRefreshed]) expect({ active: body.active, status: body.status }).toEqual({ active: true, status: undefined })
  })
})

describe('email and password methods without an email sender', () => {
  const calls: [nsid: string, body: unknown, needsToken: boolean][] = [
    ['com.atproto.server.requestEmailConfirmation', undefined, true],
    ['com.atproto.server.confirmEmail', { email: OWNER_EMAIL, token: 'ABCDE-FGHIJ' }, true],
    ['com.atproto.server.requestEmailUpdate', undefined, true],
    ['com.atproto.server.updateEmail', { email: 'new-owner@example.com' }, true],
    ['com.atproto.server.requestPasswordReset', { email: OWNER_EMAIL }, false],
    ['com.atproto.server.resetPassword', { token: 'ABCDE-FGHIJ', password: 'a-new-password-1' }, false],
  ]

  // Not compared: the reference has a (logging) mail transport and succeeds.
  test('each answers 400 InvalidRequest with a message, with or without an owner email, and changes nothing', async () => {
    for (const peer of [ours, oursB]) {
      for (const [nsid, body, needsToken] of calls) {
        const res = await xpost(peer, nsid, body, needsToken ? peer.token : undefined)
        expectXrpcError(res, 400, 'InvalidRequest')
        if (typeof res.body.message !== 'string' || res.body.message.length < 10) throw new Error(`${nsid}: no useful message: ${show(res)}`)
      }
    }
    expect((await createSession(ours, HANDLE, PASSWORD)).did).toBe(pds.did)
    const session = expectStatus(await xget(ours, 'com.atproto.server.getSession', undefined, ours.token), 200).body
    expect({ email: session.email, emailConfirmed: session.emailConfirmed }).toEqual({ email: OWNER_EMAIL, emailConfirmed: true })
  })

  test('requestEmailUpdate and updateEmail refuse app passwords: 400 InvalidToken "Bad token scope"', async () => {
    const tokens = new Map<Peer, string>()
    for (const p of peers()) tokens.set(p, (await appPasswordSession(p, uniqueName('email'), true)).session.accessJwt)
    await expectSameError((p) => xpost(p, 'com.atproto.server.requestEmailUpdate', undefined, tokens.get(p)), 400, 'InvalidToken', 'Bad token scope')
    await expectSameError(
      (p) => xpost(p, 'com.atproto.server.updateEmail', { email: 'new-owner@example.com' }, tokens.get(p)),
      400,
      'InvalidToken',
      'Bad token scope',
    )
  })
})

describe('getAccountInviteCodes', () => {
  test('the owner gets {codes: []}; an app password gets 400 InvalidToken "Bad token scope"', async () => {
    await onBoth(async (p) => {
      const res = expectStatus(await xget(p, 'com.atproto.server.getAccountInviteCodes', undefined, p.token), 200)
      expect(res.body).toEqual({ codes: [] })
    })
    const tokens = new Map<Peer, string>()
    for (const p of peers()) tokens.set(p, (await appPasswordSession(p, uniqueName('invites'))).session.accessJwt)
    await expectSameError((p) => xget(p, 'com.atproto.server.getAccountInviteCodes', undefined, tokens.get(p)), 400, 'InvalidToken', 'Bad token scope')
  })
})

describe('resolveHandle', () => {
  const resolve = (p: { url: string }, handle: string) => xget(p, 'com.atproto.identity.resolveHandle', { handle })

  test("the owner's handle (any case) resolves to the owner's DID", async () => {
    for (const p of [...peers(), oursB]) {
      for (const handle of [HANDLE, HANDLE.toUpperCase()]) expect(expectStatus(await resolve(p, handle), 200).body).toEqual({ did: p.did })
    }
  })

  test("another handle in the server's own domain: 400 HandleNotFound, without asking the AppView", async () => {
    stub.clear()
    // Our domain is the host name; the reference's (dev mode on localhost) is `.test`.
    const mine = await resolve(oursB, 'bob.localhost')
    expectXrpcError(mine, 400, 'HandleNotFound', 'Unable to resolve handle')
    expect(stub.requests).toEqual([])
    expectXrpcError(await resolve(ours, 'bob.localhost'), 400, 'HandleNotFound', 'Unable to resolve handle')
    if (ref) expect(errorOf(await resolve(ref, 'bob.test'))).toEqual(errorOf(mine))
  })

  test('other handles with the AppView unreachable: 400 InvalidRequest "Unable to resolve handle"', async () => {
    await expectSameError((p) => resolve(p, 'someone.example.com'), 400, 'InvalidRequest', 'Unable to resolve handle')
  })

  test('other handles are asked of the AppView (unauthenticated, lower-cased); its refusals and non-DIDs are a 400', async () => {
    stub.clear()
    expect(expectStatus(await resolve(oursB, 'Friend.Example.COM'), 200).body).toEqual({ did: FRIEND.did })
    expect(stub.requests).toHaveLength(1)
    expect(stub.requests[0]).toMatchObject({ method: 'GET', path: `/xrpc/com.atproto.identity.resolveHandle?handle=${FRIEND.handle}` })
    expect(stub.requests[0]?.headers.authorization).toBeUndefined()
    for (const handle of ['unknown.example.com', 'notadid.example.com']) {
      expectXrpcError(await resolve(oursB, handle), 400, 'InvalidRequest', 'Unable to resolve handle')
    }
    expect(stub.requests.map((r) => r.query.handle)).toEqual([FRIEND.handle, 'unknown.example.com', 'notadid.example.com'])
  })

  test('a malformed handle is a 400 InvalidRequest on both', async () => {
    const [a, b] = await Promise.all(peers().map((p) => resolve(p, 'not a handle')))
    expect({ status: a?.status, error: a?.body?.error }).toEqual({ status: 400, error: 'InvalidRequest' })
    if (b) expect({ status: b.status, error: b.body?.error }).toEqual({ status: 400, error: 'InvalidRequest' })
  })
})

describe('protected methods are never forwarded', () => {
  const send = (p: { url: string }, method: 'GET' | 'POST', nsid: string, body: unknown, headers: Record<string, string>) =>
    request(p, `/xrpc/${nsid}`, {
      method,
      // A method that takes no input refuses any body, as the reference does: send none for those.
      headers: { ...headers, ...(method === 'POST' && body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: method === 'POST' && body !== undefined ? JSON.stringify(body) : undefined,
    })
  test('a protected method with no local handler: 400 InvalidToken "Bad token method" with a token, with atproto-proxy, or with none; the AppView sees none', async () => {
    const proxyTo = { 'atproto-proxy': `${stub.did}#bsky_appview` }
    const bearer = { authorization: `Bearer ${oursB.token}` }
    const calls: [method: 'GET' | 'POST', nsid: string, body?: unknown][] = [
      ['POST', 'com.atproto.server.RequestAccountDelete'],
      ['POST', 'com.atproto.admin.sendEmail', { recipientDid: 'did:plc:ewvi7nxzyoun6zhxrhs64oiz', content: 'hi', senderDid: 'did:plc:ewvi7nxzyoun6zhxrhs64oiz' }],
    ]
    stub.clear()
    for (const [method, nsid, body] of calls) {
      for (const headers of [bearer, { ...bearer, ...proxyTo }, proxyTo]) {
        const res = await send(oursB, method, nsid, body, headers)
        if (res.status !== 400 || res.body?.error !== 'InvalidToken' || res.body?.message !== 'Bad token method') {
          throw new Error(`${method} ${nsid} ${JSON.stringify(headers)}: ${show(res)}`)
        }
      }
    }
    expect(stub.requests).toEqual([])
    // The check can fail: an ordinary method with the same header does get through.
    expectStatus(await send(oursB, 'GET', 'com.example.account.notProtected', undefined, { ...bearer, ...proxyTo }), 200)
    expect(stub.requests.map((r) => r.nsid)).toEqual(['com.example.account.notProtected'])
  })

  test('account management is served here, never forwarded: refusals that say why', async () => {
    const proxyTo = { 'atproto-proxy': `${stub.did}#bsky_appview` }
    const bearer = { authorization: `Bearer ${oursB.token}` }
    const calls: [nsid: string, body: unknown, mentions: string][] = [
      ['com.atproto.identity.updateHandle', { handle: 'mallory.test' }, 'does not resolve'],
      ['com.atproto.server.requestAccountDelete', undefined, 'README'],
      ['com.atproto.identity.signPlcOperation', {}, 'not a did:plc'],
    ]
    stub.clear()
    for (const [nsid, body, mentions] of calls) {
      for (const headers of [bearer, { ...bearer, ...proxyTo }]) {
        const res = await send(oursB, 'POST', nsid, body, headers)
        expect({ nsid, status: res.status, error: res.body?.error }).toEqual({ nsid, status: 400, error: 'InvalidRequest' })
        expect(String(res.body?.message)).toContain(mentions)
      }
      // Without a session they are refused before anything else.
      expectXrpcError(await send(oursB, 'POST', nsid, body, {}), 401, 'AuthMissing')
    }
    expect(stub.requests).toEqual([])
  })

  test('a GET of them is the wrong verb, on both (the reference implements them too)', async () => {
    for (const nsid of ['com.atproto.server.requestAccountDelete', 'com.atproto.identity.updateHandle']) {
      const variants: Record<string, string>[] = [{}, { 'atproto-proxy': `${UNREACHABLE_APPVIEW.did}#bsky_appview` }]
      for (const headers of variants) {
        const [a, b] = await Promise.all([ours, ref].filter(Boolean).map((p) => send(p!, 'GET', nsid, undefined, { authorization: `Bearer ${p!.token}`, ...headers })))
        expectXrpcError(a as XrpcResponse, 400, 'InvalidRequest', 'Incorrect HTTP method (GET) expected POST')
        if (b) expectXrpcError(b as XrpcResponse, 400, 'InvalidRequest', 'Incorrect HTTP method (GET) expected POST')
      }
    }
  })
})
