/**
 * Account management as clients use it: app passwords and their scopes,
 * preferences, session fields, the email methods, invite codes,
 * resolveHandle, and protected methods that must never be forwarded.
 *
 * Wherever the reference PDS (@atproto/pds from test/peers) behaves the same,
 * the same request goes to both and the answers are compared; the reference
 * has an AppView configured at an unreachable loopback port, which is all it
 * needs to serve preferences itself. Two PDSes of ours run: `pds` (AppView
 * unreachable, owner email set and confirmed) and `pdsB` (AppView = a stub
 * that records what reaches it, no email).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { AtpAgent } from '@atproto/api'
import { type PdsProcess, REPO_ROOT, startPds, stopPds } from './harness'
import { type AppViewStub, startAppViewStub } from './helpers/account-appview-stub'
import {
  createSession,
  decodeJwt,
  expectStatus,
  expectXrpcError,
  request,
  type Session,
  show,
  type XrpcResponse,
  xget,
  xpost,
} from './xrpc-client'

interface Peer {
  name: 'ours' | 'ref'
  url: string
  did: string
  handle: string
  password: string
  /** The owner's access token (full access). */
  token: string
}

interface ReferencePds {
  url: string
  did: string
  handle: string
  password: string
  email: string
  accessJwt: string
  stop(): Promise<void>
}

const REFERENCE = join(REPO_ROOT, 'test/peers/reference-pds.mjs')
/** Without the peers (a trimmed checkout) only our side is checked. */
const HAVE_REFERENCE = existsSync(REFERENCE)
const HANDLE = 'alice.test'
const PASSWORD = 'account-password-1'
const OWNER_EMAIL = 'owner@example.com'
/** Nothing listens on port 1: every forwarded call fails to connect. */
const UNREACHABLE_APPVIEW = { url: 'http://127.0.0.1:1', did: 'did:web:appview.invalid' }
const FRIEND = { handle: 'friend.example.com', did: 'did:plc:ewvi7nxzyoun6zhxrhs64oiz' }

let pds: PdsProcess
let pdsB: PdsProcess
let stub: AppViewStub
let refPds: ReferencePds | undefined
let ours: Peer
let oursB: Peer
let ref: Peer | undefined

beforeAll(async () => {
  stub = startAppViewStub({ [FRIEND.handle]: FRIEND.did, 'notadid.example.com': 'not-a-did' })
  const mod = HAVE_REFERENCE
    ? ((await import(REFERENCE as string)) as { spawnReferencePds(o: Record<string, unknown>): Promise<ReferencePds> })
    : undefined
  const [a, b, r] = await Promise.all([
    startPds({
      handle: HANDLE,
      password: PASSWORD,
      vars: {
        BSKY_APPVIEW_URL: UNREACHABLE_APPVIEW.url,
        BSKY_APPVIEW_DID: UNREACHABLE_APPVIEW.did,
        PDS_EMAIL: OWNER_EMAIL,
        PDS_EMAIL_CONFIRMED: 'true',
      },
    }),
    startPds({
      handle: HANDLE,
      password: PASSWORD,
      vars: { BSKY_APPVIEW_URL: stub.url, BSKY_APPVIEW_DID: stub.did, PDS_EMAIL_CONFIRMED: 'false' },
    }),
    mod?.spawnReferencePds({
      handle: HANDLE,
      password: PASSWORD,
      timeoutMs: 90_000,
      // Only the config matters: with an AppView the reference registers its own preference handlers.
      env: { bskyAppViewUrl: UNREACHABLE_APPVIEW.url, bskyAppViewDid: UNREACHABLE_APPVIEW.did },
    }),
  ])
  pds = a
  pdsB = b
  refPds = r
  const [sa, sb] = await Promise.all([createSession(a, HANDLE, PASSWORD), createSession(b, HANDLE, PASSWORD)])
  ours = { name: 'ours', url: a.url, did: a.did, handle: HANDLE, password: PASSWORD, token: sa.accessJwt }
  oursB = { name: 'ours', url: b.url, did: b.did, handle: HANDLE, password: PASSWORD, token: sb.accessJwt }
  if (r) ref = { name: 'ref', url: r.url, did: r.did, handle: r.handle, password: PASSWORD, token: r.accessJwt }
}, 180_000)

afterAll(async () => {
  await Promise.all([stopPds(pds), stopPds(pdsB), refPds?.stop(), stub?.stop()])
})

const peers = (): Peer[] => (ref ? [ours, ref] : [ours])

/** Runs the same check on our PDS and on the reference; failures are labelled with the server. */
const onBoth = async (check: (p: Peer) => Promise<void>): Promise<void> => {
  const failures: string[] = []
  for (const p of peers()) {
    try {
      await check(p)
    } catch (err) {
      failures.push(`[${p.name}] ${(err as Error).message}`)
    }
  }
  if (failures.length) throw new Error(failures.join('\n\n'))
}

/** The error part of an answer, for comparing two servers. */
const errorOf = (res: XrpcResponse) => ({ status: res.status, error: res.body?.error, message: res.body?.message })

/** `call` gives exactly this error on our PDS, and the reference answers the same. */
const expectSameError = async (
  call: (p: Peer) => Promise<XrpcResponse>,
  status: number,
  error: string,
  message: string,
): Promise<void> => {
  await onBoth(async (p) => expectXrpcError(await call(p), status, error, message))
}

/** An app password made by the owner, and a session logged in with it. */
const appPasswordSession = async (p: Peer, name: string, privileged = false): Promise<{ password: string; session: Session }> => {
  const res = expectStatus(await xpost(p, 'com.atproto.server.createAppPassword', { name, privileged }, p.token), 200)
  return { password: res.body.password, session: await createSession(p, p.handle, res.body.password) }
}

/** Unique per run and per call, so tests never trip over each other's app passwords. */
let counter = 0
const uniqueName = (what: string): string => `${what}-${Date.now().toString(36)}-${counter++}`

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
      // Access tokens are stateless: the revoked one lives until it expires (as the reference).
      expectStatus(await xget(p, 'com.atproto.server.getSession', undefined, gone.get(p)?.session.accessJwt), 200)
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
    await expectSameError((p) => putPrefs(p, [{ $type: '', enabled: true }]), 400, 'InvalidRequest', 'Some preferences are not in the app.bsky namespace')
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
      headers: { ...headers, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
      body: method === 'POST' ? JSON.stringify(body ?? {}) : undefined,
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

  test('account management a single-user PDS does through its settings: a 400 that says how, never forwarded', async () => {
    const proxyTo = { 'atproto-proxy': `${stub.did}#bsky_appview` }
    const bearer = { authorization: `Bearer ${oursB.token}` }
    const calls: [nsid: string, body: unknown, mentions: string][] = [
      ['com.atproto.identity.updateHandle', { handle: 'mallory.test' }, 'PDS_HANDLE'],
      ['com.atproto.server.deactivateAccount', {}, 'owner'],
      ['com.atproto.server.requestAccountDelete', undefined, 'README'],
      ['com.atproto.identity.signPlcOperation', {}, 'rotation key'],
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
