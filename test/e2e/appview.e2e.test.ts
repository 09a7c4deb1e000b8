/**
 * A real AppView behind our PDS's proxy, driven the way the Bluesky app drives a PDS: `@atproto/api`'s
 * agent logs in, reads and writes preferences, posts with an image, reads feeds, threads and profiles
 * (right after a write, before the AppView has indexed it, and after), and follows an account that
 * lives on a second PDS.
 *
 * The peers run in a Node 22 child (test/appview/appview.mjs): the official @atproto/bsky AppView
 * (dev-env's TestBsky + TestBsync over a private Postgres), an in-memory PLC directory where our
 * account is a did:plc whose key is our signing key and whose PDS is our URL, and a reference PDS
 * hosting bob. The AppView indexes both PDSes' firehoses. Read-after-write is checked with the
 * AppView's indexing of our firehose paused, so "not yet indexed" is a fact the test verifies rather
 * than a race it hopes to win. Last, bob migrates from the reference PDS to a second deployment of ours
 * (goat's calls) and the AppView keeps serving him: old posts, handle, and what he posts from ours.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { AtpAgent } from '@atproto/api'
import { Secp256k1Keypair } from '@atproto/crypto'
import { freePort, type PdsProcess, REPO_ROOT, startPds, stopPds } from './harness'
import { logHead, subscribe } from './helpers/firehose-client'
import { StreamChecker } from './helpers/firehose-verify'
import { deactivateOld, migrate, referencePlcToken, type Side } from './helpers/migration'
import { createSession, expectStatus, xget, xpost } from './xrpc-client'

interface Appview {
  appviewUrl: string
  appviewDid: string
  controlUrl: string
  plcUrl: string
  plcUrlIp: string
  account: { did: string; handle: string; signingKeyHex: string }
  friend: { url: string; did: string; handle: string; password: string; posts: { uri: string; cid: string; text: string }[]; dataDir: string }
  startupMs: number
  timings: Record<string, number>
  stop(): Promise<void>
}

const LAUNCHER = join(REPO_ROOT, 'test/appview/appview.mjs')
const HANDLE = 'alice.test'
const PASSWORD = 'appview-password-1'
const INDEX_TIMEOUT_MS = 20_000

/** A 1x1 PNG: the smallest image the AppView's embed view accepts as such. */
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
)

let av: Appview
let pds: PdsProcess
/** A second deployment of ours, for bob's DID: deactivated and empty until he migrates to it (last describe). */
let bobsNewPds: PdsProcess
let agent: AtpAgent

beforeAll(async () => {
  const t0 = performance.now()
  const [port, bobsPort] = [await freePort(), await freePort()]
  const mod = (await import(LAUNCHER as string)) as { spawnAppview(opts: Record<string, unknown>): Promise<Appview> }
  av = await mod.spawnAppview({ pdsPort: port, extraPdsPorts: [bobsPort], handle: HANDLE, timeoutMs: 180_000 })
  const tAppview = performance.now()
  const appviewVars = { PLC_URL: av.plcUrlIp, BSKY_APPVIEW_URL: av.appviewUrl, BSKY_APPVIEW_DID: av.appviewDid }
  ;[pds, bobsNewPds] = await Promise.all([
    startPds({ port, handle: HANDLE, password: PASSWORD, signingKeyHex: av.account.signingKeyHex, vars: { PDS_DID: av.account.did, ...appviewVars } }),
    // As `npm run setup -- --did <bob's>`: a new signing key and rotation key, nothing published.
    startPds({ port: bobsPort, handle: av.friend.handle, vars: { PDS_DID: av.friend.did, PDS_PLC_ROTATION_KEY: await newKeyHex(), ...appviewVars } }),
  ])
  console.log(
    `appview peers up in ${Math.round(tAppview - t0)} ms (${JSON.stringify(av.timings)}), ` +
      `our two PDSes in ${Math.round(performance.now() - tAppview)} ms`,
  )
  agent = new AtpAgent({ service: pds.url })
}, 600_000)

afterAll(async () => {
  await Promise.all([stopPds(pds), stopPds(bobsNewPds), av?.stop()])
})

// --- helpers ------------------------------------------------------------------------------------

const newKeyHex = async (): Promise<string> => Buffer.from(await (await Secp256k1Keypair.create({ exportable: true })).export()).toString('hex')

/** An unauthenticated GET straight to the AppView (not through our PDS); an array is a repeated parameter. */
const appviewGet = async (nsid: string, params: Record<string, string | string[]>): Promise<{ status: number; body: any }> => {
  const query = new URLSearchParams(Object.entries(params).flatMap(([k, v]) => [v].flat().map((x) => [k, x])))
  const res = await fetch(`${av.appviewUrl}/xrpc/${nsid}?${query}`)
  return { status: res.status, body: await res.json().catch(() => undefined) }
}

/** Waits until the AppView has taken in a PDS's firehose up to its last event now. */
const appviewReadAll = async (pds: { url: string }): Promise<void> => {
  const head = await logHead(pds, 0)
  const port = new URL(pds.url).port
  await eventually(`the AppView to read ${pds.url}'s firehose up to seq ${head}`, async () => {
    const cursors = (await (await fetch(`${av.controlUrl}/cursors`)).json()) as Record<string, number | null>
    return (cursors[port] ?? -1) >= head ? true : undefined
  })
}

/** Pauses or resumes the AppView's indexing of our firehose; returns the control state. */
const indexing = async (action: 'pause' | 'resume'): Promise<{ paused: boolean; cursor: number | null }> => {
  const res = await fetch(`${av.controlUrl}/our-indexing/${action}`, { method: 'POST' })
  expect(res.status).toBe(200)
  return (await res.json()) as { paused: boolean; cursor: number | null }
}

/** Polls until `check` returns a value (not undefined) or the timeout passes; then fails with `what`. */
const eventually = async <T>(what: string, check: () => Promise<T | undefined>, timeoutMs = INDEX_TIMEOUT_MS): Promise<T> => {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ''}`)
    await Bun.sleep(150)
  }
}

/** Waits until the AppView itself serves the post (it has indexed it). */
const waitIndexed = (uri: string): Promise<any> =>
  eventually(`the AppView to index ${uri}`, async () => {
    const res = await appviewGet('app.bsky.feed.getPostThread', { uri })
    return res.status === 200 ? res.body : undefined
  })

const feedUris = (feed: { post: { uri: string } }[]): string[] => feed.map((item) => item.post.uri)

/**
 * getProfile through our PDS once `ready` holds: the AppView updates counts (posts, follows) in a
 * background queue after it indexed the record itself, so they may lag the feeds by a moment.
 */
const profileOnce = (actor: string, what: string, ready: (p: any) => boolean): Promise<any> =>
  eventually(what, async () => {
    const res = await agent.getProfile({ actor })
    return ready(res.data) ? res.data : undefined
  })

// --- the suite ----------------------------------------------------------------------------------

describe('through our PDS to a real AppView', () => {
  let firstPost: { uri: string; cid: string }
  let imagePost: { uri: string; cid: string }
  let imageCid: string

  test('log in with the did:plc account the AppView resolves', async () => {
    const res = await agent.login({ identifier: HANDLE, password: PASSWORD })
    expect(res.data.did).toBe(av.account.did)
    expect(res.data.handle).toBe(HANDLE)
    expect(agent.session?.did).toBe(av.account.did)
    // The DID document in the PLC names our PDS and our signing key: the AppView's view of us.
    const doc = (await (await fetch(`${av.plcUrlIp}/${av.account.did}`)).json()) as any
    expect(doc.service.find((s: any) => s.id === '#atproto_pds')?.serviceEndpoint).toBe(pds.publicUrl)
    expect(doc.alsoKnownAs).toEqual([`at://${HANDLE}`])
  })

  test('getPreferences / putPreferences, plain and with the app\'s atproto-proxy header', async () => {
    const empty = await agent.app.bsky.actor.getPreferences()
    expect(empty.data.preferences).toEqual([])

    // The app's helpers read, modify and write back the whole list.
    await agent.setAdultContentEnabled(true)
    await agent.setFeedViewPrefs('home', { hideReplies: true })
    const prefs = await agent.getPreferences()
    expect(prefs.moderationPrefs.adultContentEnabled).toBe(true)
    expect(prefs.feedViewPrefs.home?.hideReplies).toBe(true)

    // The app sends every app.bsky call with `atproto-proxy: <appview did>#bsky_appview`; preferences
    // are still the PDS's own (the reference serves them locally for its configured AppView).
    const proxied = agent.withProxy('bsky_appview', av.appviewDid)
    const raw = await proxied.app.bsky.actor.getPreferences()
    expect(raw.data.preferences).toContainEqual({ $type: 'app.bsky.actor.defs#adultContentPref', enabled: true })
    const saved = { $type: 'app.bsky.actor.defs#contentLabelPref', label: 'nudity', visibility: 'warn' }
    await proxied.app.bsky.actor.putPreferences({ preferences: [...raw.data.preferences, saved] })
    const after = await agent.app.bsky.actor.getPreferences()
    expect(after.data.preferences).toEqual([...raw.data.preferences, saved])
  })

  test('a post is indexed from our firehose and served through the proxy', async () => {
    firstPost = await agent.post({ text: 'first post, through a real AppView', createdAt: new Date().toISOString() })
    const thread = await waitIndexed(firstPost.uri)
    expect(thread.thread.post.cid).toBe(firstPost.cid)
    // The AppView verified our handle against our PDS (not handle.invalid).
    expect(thread.thread.post.author).toMatchObject({ did: av.account.did, handle: HANDLE })

    const feed = await agent.getAuthorFeed({ actor: av.account.did })
    expect(feedUris(feed.data.feed)).toEqual([firstPost.uri])
    expect(feed.data.feed[0]?.post.record).toMatchObject({ text: 'first post, through a real AppView' })
    // Only the AppView counts: postsCount comes from its index.
    const profile = await profileOnce(HANDLE, 'postsCount 1', (p) => p.postsCount === 1)
    expect(profile).toMatchObject({ did: av.account.did, handle: HANDLE, postsCount: 1 })
  })

  describe('read-after-write: the AppView has not indexed the writes yet', () => {
    beforeAll(async () => {
      const state = await indexing('pause')
      expect(state.paused).toBe(true)
    })
    afterAll(async () => {
      await indexing('resume')
    })

    test('post with an image and update the profile', async () => {
      const upload = await agent.uploadBlob(PNG, { encoding: 'image/png' })
      imageCid = upload.data.blob.ref.toString()
      expect(upload.data.blob.mimeType).toBe('image/png')
      imagePost = await agent.post({
        text: 'a picture, before the AppView saw it',
        embed: {
          $type: 'app.bsky.embed.images',
          images: [{ image: upload.data.blob, alt: 'one pixel', aspectRatio: { width: 1, height: 1 } }],
        },
        createdAt: new Date().toISOString(),
      })
      await agent.upsertProfile((existing) => ({ ...existing, displayName: 'Alice on the edge' }))

      // The AppView itself really has not seen them: everything below comes from read-after-write.
      expect((await appviewGet('app.bsky.feed.getPostThread', { uri: imagePost.uri })).status).toBe(400)
      const raw = await appviewGet('app.bsky.actor.getProfile', { actor: av.account.did })
      expect(raw.body.displayName).toBeUndefined()
    })

    test('getAuthorFeed shows the new post first, with its image', async () => {
      const feed = await agent.getAuthorFeed({ actor: av.account.did })
      expect(feedUris(feed.data.feed)).toEqual([imagePost.uri, firstPost.uri])
      const post = feed.data.feed[0]!.post
      expect(post.cid).toBe(imagePost.cid)
      expect(post.record).toMatchObject({ text: 'a picture, before the AppView saw it' })
      expect(post.author).toMatchObject({ did: av.account.did, handle: HANDLE, displayName: 'Alice on the edge' })
      const embed = post.embed as any
      expect(embed.$type).toBe('app.bsky.embed.images#view')
      expect(embed.images).toHaveLength(1)
      expect(embed.images[0].alt).toBe('one pixel')
      expect(embed.images[0].thumb).toContain(imageCid)
      expect(embed.images[0].fullsize).toContain(imageCid)
    })

    test('getTimeline shows the new post first', async () => {
      const timeline = await agent.getTimeline({ limit: 30 })
      expect(feedUris(timeline.data.feed)).toEqual([imagePost.uri, firstPost.uri])
      expect(timeline.data.feed[0]!.post.record).toMatchObject({ text: 'a picture, before the AppView saw it' })
    })

    test('getPostThread of the new post', async () => {
      const res = await agent.getPostThread({ uri: imagePost.uri })
      const thread = res.data.thread as any
      expect(thread.$type).toBe('app.bsky.feed.defs#threadViewPost')
      expect(thread.post.uri).toBe(imagePost.uri)
      expect(thread.post.cid).toBe(imagePost.cid)
      expect(thread.post.record.text).toBe('a picture, before the AppView saw it')
      expect(thread.post.embed.images[0].thumb).toContain(imageCid)
    })

    test('getProfile shows the new display name', async () => {
      const profile = await agent.getProfile({ actor: av.account.did })
      expect(profile.data).toMatchObject({ did: av.account.did, handle: HANDLE, displayName: 'Alice on the edge' })
    })
  })

  describe('after the AppView indexed the writes', () => {
    test('the same reads now come from the AppView\'s index', async () => {
      const indexed = await waitIndexed(imagePost.uri)
      expect(indexed.thread.post.embed.images[0].thumb).toContain(imageCid)
      await eventually('the AppView to index the profile', async () => {
        const res = await appviewGet('app.bsky.actor.getProfile', { actor: av.account.did })
        return res.body?.displayName === 'Alice on the edge' ? true : undefined
      })

      const feed = await agent.getAuthorFeed({ actor: HANDLE })
      expect(feedUris(feed.data.feed)).toEqual([imagePost.uri, firstPost.uri])
      expect((feed.data.feed[0]!.post.embed as any).images[0].fullsize).toContain(imageCid)
      const timeline = await agent.getTimeline()
      expect(feedUris(timeline.data.feed)).toEqual([imagePost.uri, firstPost.uri])
      const thread = (await agent.getPostThread({ uri: imagePost.uri })).data.thread as any
      expect(thread.post.cid).toBe(imagePost.cid)
      // Index-only facts, which read-after-write cannot make up.
      expect(thread.post.indexedAt).toEqual(expect.any(String))
      expect(thread.post.likeCount).toBe(0)
      const profile = await profileOnce(HANDLE, 'postsCount 2', (p) => p.postsCount === 2)
      expect(profile).toMatchObject({ displayName: 'Alice on the edge', postsCount: 2 })
    })
  })

  describe('an account on a second PDS', () => {
    test('its profile and posts are visible through our proxy', async () => {
      const profile = await agent.getProfile({ actor: av.friend.handle })
      expect(profile.data).toMatchObject({ did: av.friend.did, handle: av.friend.handle, postsCount: av.friend.posts.length })
      expect(profile.data.viewer?.following).toBeUndefined()
      const feed = await agent.getAuthorFeed({ actor: av.friend.did })
      expect(feedUris(feed.data.feed)).toEqual(av.friend.posts.map((p) => p.uri).reverse())
    })

    test('follow it and see its posts in the timeline', async () => {
      const follow = await agent.follow(av.friend.did)
      expect(follow.uri).toStartWith(`at://${av.account.did}/app.bsky.graph.follow/`)
      const timeline = await eventually('bob\'s posts in our timeline', async () => {
        const res = await agent.getTimeline({ limit: 50 })
        return res.data.feed.length >= 4 ? res.data : undefined
      })
      // Newest first: bob's two posts were written before ours.
      expect(feedUris(timeline.feed)).toEqual([imagePost.uri, firstPost.uri, ...av.friend.posts.map((p) => p.uri).reverse()])
      for (const p of av.friend.posts) {
        const item = timeline.feed.find((i) => i.post.uri === p.uri)!
        expect(item.post.cid).toBe(p.cid)
        expect(item.post.record).toMatchObject({ text: p.text })
        expect(item.post.author).toMatchObject({ did: av.friend.did, handle: av.friend.handle })
      }
      const profile = await agent.getProfile({ actor: av.friend.did })
      expect(profile.data.viewer?.following).toBe(follow.uri)
      expect((await profileOnce(HANDLE, 'followsCount 1', (p) => p.followsCount === 1)).followsCount).toBe(1)
    })

    test('the app\'s atproto-proxy header reaches the same AppView', async () => {
      const proxied = agent.withProxy('bsky_appview', av.appviewDid)
      const timeline = await proxied.getTimeline({ limit: 50 })
      expect(feedUris(timeline.data.feed)).toEqual([imagePost.uri, firstPost.uri, ...av.friend.posts.map((p) => p.uri).reverse()])
      const thread = (await proxied.getPostThread({ uri: av.friend.posts[0]!.uri })).data.thread as any
      expect(thread.post.record.text).toBe(av.friend.posts[0]!.text)
    })
  })
})

describe('bob moves from the reference PDS to a second PDS of ours', () => {
  let bob: AtpAgent // logged in on his new PDS
  let moved: { uri: string; cid: string }
  const oldUris = (): string[] => av.friend.posts.map((p) => p.uri)

  test("goat's sequence into a deployment that was waiting for him; the reference retires his account", async () => {
    const { did, handle, password } = av.friend
    expect(expectStatus(await xget(bobsNewPds, 'com.atproto.sync.getRepoStatus', { did }), 200).body).toEqual({ did, active: false, status: 'deactivated' })
    const from: Side = { url: av.friend.url, token: (await createSession(av.friend, handle, password)).accessJwt }
    const plcToken = async (): Promise<string> => {
      expectStatus(await xpost(from, 'com.atproto.identity.requestPlcOperationSignature', undefined, from.token), 200)
      return referencePlcToken(av.friend.dataDir, did)
    }
    await migrate({ did, handle, newPassword: bobsNewPds.password, email: 'bob@example.com', from, to: bobsNewPds.url, plcToken })
    await deactivateOld(from)
    const data = (await (await fetch(`${av.plcUrlIp}/${did}/data`)).json()) as any
    expect(data.services.atproto_pds.endpoint).toBe(bobsNewPds.publicUrl)
    expect(data.verificationMethods.atproto).toBe(bobsNewPds.didKey)
    // Everything both PDSes said is in: our #identity/#account/#sync, and the reference's #account (deactivated).
    await Promise.all([appviewReadAll(av.friend), appviewReadAll(bobsNewPds)])
    bob = new AtpAgent({ service: bobsNewPds.url })
    await bob.login({ identifier: handle, password: bobsNewPds.password })
  }, 60_000)

  test('his old posts at the same at:// URIs and his profile with his handle, from the AppView and through our PDS', async () => {
    const { did, handle, posts } = av.friend
    const profile = await appviewGet('app.bsky.actor.getProfile', { actor: handle })
    expect(profile.status).toBe(200)
    expect(profile.body).toMatchObject({ did, handle, postsCount: posts.length })
    // The AppView checked the handle on our #identity events, while the reference still answered for it; its next
    // check (the launcher asks the reference, then our second PDS) finds it here: the reference has let it go.
    const handleAt = (url: string) => fetch(`${url}/.well-known/atproto-did`, { headers: { host: handle } })
    expect([(await handleAt(av.friend.url)).status, await (await handleAt(bobsNewPds.url)).text()]).toEqual([404, did])
    expect(feedUris((await appviewGet('app.bsky.feed.getAuthorFeed', { actor: did })).body.feed)).toEqual(oldUris().reverse())
    const direct = await appviewGet('app.bsky.feed.getPosts', { uris: oldUris() })
    expect(direct.body.posts.map((p: any) => [p.uri, p.cid, p.author.handle])).toEqual(posts.map((p) => [p.uri, p.cid, handle]))

    expect((await bob.getProfile({ actor: did })).data).toMatchObject({ did, handle, postsCount: posts.length })
    expect(feedUris((await bob.getAuthorFeed({ actor: handle })).data.feed)).toEqual(oldUris().reverse())
    const proxied = await bob.getPosts({ uris: oldUris() })
    expect(proxied.data.posts.map((p) => [p.uri, p.cid, (p.record as any).text])).toEqual(posts.map((p) => [p.uri, p.cid, p.text]))
  })

  test('a post he writes on our PDS is indexed: the AppView follows his new host and key', async () => {
    const { did, handle } = av.friend
    const t0 = performance.now()
    moved = await bob.post({ text: 'Posting from the edge now', createdAt: new Date().toISOString() })
    const thread = await waitIndexed(moved.uri)
    console.log(`bob's first post from our PDS indexed by the AppView in ${Math.round(performance.now() - t0)} ms`)
    expect(thread.thread.post).toMatchObject({ uri: moved.uri, cid: moved.cid, author: { did, handle } })
    const feed = await appviewGet('app.bsky.feed.getAuthorFeed', { actor: did })
    expect(feedUris(feed.body.feed)).toEqual([moved.uri, ...oldUris().reverse()])
    const counted = async () => (await appviewGet('app.bsky.actor.getProfile', { actor: did })).body?.postsCount === 3 || undefined
    await eventually('postsCount 3, old posts and new', counted)

    // bsky's subscription leaves signatures to the relay in front of it (it runs with unauthenticatedCommits):
    // this is what that relay checks, on the stream the AppView just indexed.
    const sub = await subscribe(bobsNewPds, 0)
    await sub.waitForCount(5)
    await sub.close()
    expect(sub.frames.map((f) => f.header.t)).toEqual(['#identity', '#account', '#identity', '#sync', '#commit'])
    expect(await new StreamChecker({ didKey: bobsNewPds.didKey, repo: did, contiguous: true }).checkAll(sub.frames)).toEqual([])
  })

  test('alice, on our first PDS, still follows him, sees the new post and replies to an old one', async () => {
    const { did, handle } = av.friend
    // The follow from 'an account on a second PDS' names his DID: the move does not touch it.
    expect((await agent.getProfile({ actor: handle })).data.viewer?.following).toStartWith(`at://${av.account.did}/app.bsky.graph.follow/`)
    const timeline = await agent.getTimeline({ limit: 50 })
    expect(timeline.data.feed[0]?.post).toMatchObject({ uri: moved.uri, author: { did, handle } })

    const old = av.friend.posts[0]!
    const ref = { uri: old.uri, cid: old.cid }
    const reply = await agent.post({ text: 'Welcome to the edge, bob', reply: { root: ref, parent: ref }, createdAt: new Date().toISOString() })
    await waitIndexed(reply.uri)
    const thread = (await bob.getPostThread({ uri: old.uri })).data.thread as any
    expect(thread.post.author).toMatchObject({ did, handle })
    expect(thread.replies.map((r: any) => [r.post.uri, r.post.author.did])).toEqual([[reply.uri, av.account.did]])
  })
})
