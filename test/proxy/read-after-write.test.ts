/**
 * src/proxy/read-after-write against the real schema and write path: records
 * are written with commitWrites, the AppView's answer is a Response built
 * here (the function's input, shaped like the AppView's JSON), and the
 * patched body is compared exactly with what the reference PDS's algorithm
 * produces: new posts slotted in by indexedAt with zeroed counts and the
 * owner as author, newer profile fields, replies under their parent, a
 * NotFound thread answered locally, and the Atproto-Upstream-Lag header.
 */
import { cidForRawBytes } from '@atproto/lex-data'
import { jsonToLex, type JsonValue } from '@atproto/lex-json'
import { beforeEach, describe, expect, it } from 'vitest'
import { openDb } from '../../src/db/client'
import { upsertBlob } from '../../src/db/blobs'
import { getRoot } from '../../src/db/repo'
import type { Config } from '../../src/env'
import { READ_AFTER_WRITE_METHODS, readAfterWrite } from '../../src/proxy/read-after-write'
import { commitWrites, type RepoContext } from '../../src/repo/commit'
import { prepareCreate, prepareUpdate } from '../../src/repo/prepare'
import { newRepoContext, sleep, testConfig, wipeDatabase, workerEnv } from '../repo/fixtures'

const POST = 'app.bsky.feed.post'
const PROFILE = 'app.bsky.actor.profile'
const BOB = { did: 'did:plc:bobbobbobbobbobbobbobbob', handle: 'bob.test' }

let ctx: RepoContext
let config: Config
/** The rev the fake AppView has indexed: the repo after the "old" writes. */
let appViewRev: string
/** The owner's post the AppView already knows. */
let oldPost: Written

interface Written {
  uri: string
  cid: string
  rkey: string
  indexedAt: string
  record: Record<string, unknown>
}

/** Creates a record, or puts it when given an rkey. */
const write = async (collection: string, record: Record<string, unknown>, rkey?: string): Promise<Written> => {
  const full = { $type: collection, ...record }
  const input = { did: ctx.did, collection, record: jsonToLex(full as JsonValue) }
  // The profile is put (created or replaced), as clients do with putRecord.
  const prepared = rkey ? await prepareUpdate({ ...input, rkey }) : await prepareCreate(input)
  await commitWrites(ctx, [rkey ? { ...prepared, action: 'put' } : prepared])
  const row = await workerEnv.DB.prepare('SELECT indexed_at AS at FROM record WHERE uri = ?').bind(prepared.uri).first<{ at: string }>()
  // Distinct indexedAt per write, so the expected order is unambiguous.
  await sleep(3)
  return { uri: prepared.uri, cid: prepared.cid.toString(), rkey: prepared.rkey, indexedAt: row!.at, record: full }
}

/** A blob the repo holds, as a record references it (JSON form). */
const storeBlob = async (seed: string) => {
  const bytes = new TextEncoder().encode(seed)
  const cid = (await cidForRawBytes(bytes)).toString()
  await upsertBlob(ctx.db, { cid, r2Key: cid, mimeType: 'image/png', size: bytes.byteLength }, new Date().toISOString())
  return { $type: 'blob', ref: { $link: cid }, mimeType: 'image/png', size: bytes.byteLength }
}

const blobUrl = (blob: { ref: { $link: string } }): string =>
  `http://localhost:8787/xrpc/com.atproto.sync.getBlob?did=did%3Aweb%3Alocalhost%253A8787&cid=${blob.ref.$link}`

const appView = (body: unknown, opts: { status?: number; rev?: string | null; contentType?: string } = {}): Response => {
  const text = JSON.stringify(body)
  const headers = new Headers({ 'content-type': opts.contentType ?? 'application/json; charset=utf-8', 'content-length': String(text.length), 'x-appview': 'kept' })
  if (opts.rev !== null) headers.set('atproto-repo-rev', opts.rev ?? appViewRev)
  return new Response(text, { status: opts.status ?? 200, headers })
}

const call = (nsid: string, upstream: Response, params: Record<string, string> = {}): Promise<Response> =>
  readAfterWrite(nsid, upstream, { db: openDb(workerEnv.DB), config, handle: config.handle, url: new URL(`http://localhost:8787/xrpc/${nsid}?${new URLSearchParams(params)}`) })

/** A post by someone else, as the AppView shows it. */
const bobPost = (rkey: string, indexedAt: string, record: Record<string, unknown> = {}) => ({
  uri: `at://${BOB.did}/${POST}/${rkey}`,
  cid: oldPost.cid,
  author: { ...BOB, displayName: 'Bob' },
  record: { $type: POST, text: `bob ${rkey}`, createdAt: indexedAt, ...record },
  likeCount: 4,
  replyCount: 1,
  repostCount: 0,
  quoteCount: 0,
  indexedAt,
})

/** The owner's old post as the AppView shows it (with the old profile). */
const oldPostView = () => ({
  uri: oldPost.uri,
  cid: oldPost.cid,
  author: { did: config.did, handle: config.handle, displayName: 'Old name' },
  record: oldPost.record,
  likeCount: 2,
  replyCount: 0,
  repostCount: 1,
  quoteCount: 0,
  indexedAt: oldPost.indexedAt,
})

/** What the PDS builds for a post the AppView has not seen. */
const localView = (post: Written, author: Record<string, unknown>) => ({
  uri: post.uri,
  cid: post.cid,
  likeCount: 0,
  replyCount: 0,
  repostCount: 0,
  quoteCount: 0,
  author: { did: config.did, handle: config.handle, ...author },
  record: post.record,
  indexedAt: post.indexedAt,
})

const expectLag = (res: Response, oldest: string): void => {
  const lag = Number(res.headers.get('atproto-upstream-lag'))
  expect(Number.isInteger(lag)).toBe(true)
  expect(lag).toBeGreaterThanOrEqual(Date.now() - new Date(oldest).getTime() - 5_000)
  expect(lag).toBeLessThanOrEqual(Date.now() - new Date(oldest).getTime())
}

beforeEach(async () => {
  await wipeDatabase()
  await workerEnv.DB.batch([workerEnv.DB.prepare('DELETE FROM record_blob'), workerEnv.DB.prepare('DELETE FROM blob')])
  ctx = await newRepoContext()
  config = await testConfig()
  await write(PROFILE, { displayName: 'Old name' }, 'self')
  oldPost = await write(POST, { text: 'old', createdAt: '2024-01-01T00:00:00.000Z' })
  appViewRev = (await getRoot(ctx.db))!.rev
})

describe('when nothing applies', () => {
  it('returns the upstream Response itself', async () => {
    const feed = { feed: [] }
    expect(READ_AFTER_WRITE_METHODS).toEqual(
      new Set([
        'app.bsky.feed.getTimeline',
        'app.bsky.feed.getAuthorFeed',
        'app.bsky.feed.getPostThread',
        'app.bsky.actor.getProfile',
        'app.bsky.actor.getProfiles',
        'app.bsky.feed.getActorLikes',
      ]),
    )
    // The AppView is caught up: only the root is read.
    let upstream = appView(feed)
    const db = openDb(workerEnv.DB)
    expect(await readAfterWrite('app.bsky.feed.getTimeline', upstream, { db, config, handle: config.handle, url: new URL('http://x/') })).toBe(upstream)
    expect(db.stats.queries).toBe(1)

    await write(POST, { text: 'new', createdAt: new Date().toISOString() })
    for (const [nsid, res] of [
      ['app.bsky.feed.getTimeline', appView(feed, { rev: null })],
      ['app.bsky.feed.getTimeline', appView(feed, { status: 500 })],
      ['app.bsky.feed.getTimeline', appView(feed, { contentType: 'text/plain' })],
      ['app.bsky.feed.getFeed', appView(feed)],
      // A rev older than every record is not about this repo (e.g. before a migration).
      ['app.bsky.feed.getTimeline', appView(feed, { rev: '2222222222222' })],
    ] as const) {
      expect(await call(nsid, res)).toBe(res)
    }
    upstream = appView({ error: 'NotFound', message: 'Post not found' }, { status: 400 })
    expect(await call('app.bsky.feed.getPostThread', upstream, { uri: `at://${BOB.did}/${POST}/x` })).toBe(upstream)
  })

  it('answers with the same bytes when the body fails the output lexicon', async () => {
    await write(POST, { text: 'new', createdAt: new Date().toISOString() })
    const res = await call('app.bsky.feed.getTimeline', appView({ feed: [{ post: { uri: 'nope' } }] }))
    expect(res.status).toBe(200)
    expect(res.headers.get('atproto-upstream-lag')).toBeNull()
    expect(await res.json()).toEqual({ feed: [{ post: { uri: 'nope' } }] })
  })

  it('re-serializes without a lag header when only other collections are newer (as the reference)', async () => {
    await write('app.bsky.feed.like', { subject: { uri: oldPost.uri, cid: oldPost.cid }, createdAt: new Date().toISOString() })
    const body = { feed: [{ post: oldPostView() }], cursor: 'c1' }
    const res = await call('app.bsky.feed.getTimeline', appView(body))
    expect(res.headers.get('atproto-upstream-lag')).toBeNull()
    expect(await res.json()).toEqual(body)
  })
})

describe('feeds', () => {
  it('getTimeline slots new posts in by indexedAt, with the current profile as author and image URLs from getBlob', async () => {
    const avatar = await storeBlob('avatar')
    const image = await storeBlob('image')
    const profile = await write(PROFILE, { displayName: 'Alice', avatar }, 'self')
    const first = await write(POST, { text: 'first', createdAt: new Date().toISOString() })
    const second = await write(POST, {
      text: 'with a picture',
      createdAt: new Date().toISOString(),
      reply: { root: { uri: bobPost('r', '').uri, cid: oldPost.cid }, parent: { uri: bobPost('r', '').uri, cid: oldPost.cid } },
      embed: { $type: 'app.bsky.embed.images', images: [{ alt: 'a cat', image, aspectRatio: { width: 4, height: 3 } }] },
    })
    const upstreamFeed = [{ post: bobPost('b2', '2024-06-02T00:00:00.000Z') }, { post: bobPost('b1', '2024-06-01T00:00:00.000Z') }]
    const upstream = appView({ feed: upstreamFeed, cursor: 'next' })
    const res = await call('app.bsky.feed.getTimeline', upstream)

    expect(res.status).toBe(200)
    expect(res.headers.get('content-length')).toBeNull()
    expect(res.headers.get('x-appview')).toBe('kept')
    expect(res.headers.get('atproto-repo-rev')).toBe(appViewRev)
    expectLag(res, profile.indexedAt)
    const author = { displayName: 'Alice', avatar: blobUrl(avatar) }
    expect(await res.json()).toEqual({
      feed: [
        {
          post: {
            ...localView(second, author),
            embed: {
              $type: 'app.bsky.embed.images#view',
              images: [{ thumb: blobUrl(image), fullsize: blobUrl(image), aspectRatio: { width: 4, height: 3 }, alt: 'a cat' }],
            },
          },
        },
        { post: localView(first, author) },
        ...upstreamFeed,
      ],
      cursor: 'next',
    })
  })

  it('getTimeline leaves out new posts older than the last item and places the rest among the items', async () => {
    const post = await write(POST, { text: 'new', createdAt: new Date().toISOString() })
    const later = new Date(Date.now() + 60_000).toISOString()
    const upstreamFeed = [{ post: bobPost('future', later) }, { post: bobPost('old', '2024-01-01T00:00:00.000Z') }]
    const res = await call('app.bsky.feed.getTimeline', appView({ feed: upstreamFeed }))
    expect(await res.json()).toEqual({ feed: [upstreamFeed[0], { post: localView(post, { displayName: 'Old name' }) }, upstreamFeed[1]] })

    const page = [{ post: bobPost('future', later) }]
    const res2 = await call('app.bsky.feed.getTimeline', appView({ feed: page }))
    expect(await res2.json()).toEqual({ feed: page })
    expectLag(res2, post.indexedAt)
  })

  it("getAuthorFeed refreshes the owner's profile and adds new posts on the owner's feed only", async () => {
    const profile = await write(PROFILE, { displayName: 'Alice', description: 'not in basic views' }, 'self')
    const post = await write(POST, { text: 'new', createdAt: new Date().toISOString() })
    const repost = { post: bobPost('b1', '2023-12-01T00:00:00.000Z'), reason: { $type: 'app.bsky.feed.defs#reasonRepost', by: { did: config.did, handle: config.handle }, indexedAt: '2024-02-01T00:00:00.000Z' } }
    const res = await call('app.bsky.feed.getAuthorFeed', appView({ feed: [{ post: oldPostView() }, repost] }), { actor: config.did })
    expectLag(res, profile.indexedAt)
    expect(await res.json()).toEqual({
      feed: [{ post: localView(post, { displayName: 'Alice' }) }, { post: { ...oldPostView(), author: { did: config.did, handle: config.handle, displayName: 'Alice' } } }, repost],
    })

    // Starting with the owner's repost counts as the owner's feed too.
    const res2 = await call('app.bsky.feed.getAuthorFeed', appView({ feed: [repost] }))
    expect(((await res2.json()) as { feed: unknown }).feed).toEqual([{ post: localView(post, { displayName: 'Alice' }) }, repost])

    // Someone else's feed (or an empty one) is not changed, but still says how far behind the AppView is.
    const bobs = { feed: [{ post: bobPost('b1', '2023-12-01T00:00:00.000Z') }] }
    const res3 = await call('app.bsky.feed.getAuthorFeed', appView(bobs), { actor: BOB.did })
    expectLag(res3, profile.indexedAt)
    expect(await res3.json()).toEqual(bobs)
    expect(await (await call('app.bsky.feed.getAuthorFeed', appView({ feed: [] }))).json()).toEqual({ feed: [] })
  })

  it("getActorLikes refreshes the owner's profile on liked posts and adds nothing", async () => {
    const avatar = await storeBlob('avatar')
    await write(PROFILE, { avatar }, 'self')
    await write(POST, { text: 'new', createdAt: new Date().toISOString() })
    const bob = { post: bobPost('b1', '2023-12-01T00:00:00.000Z') }
    const res = await call('app.bsky.feed.getActorLikes', appView({ feed: [bob, { post: oldPostView() }] }))
    expect(await res.json()).toEqual({
      // The new record has no displayName, so the view loses the old one (as in the reference).
      feed: [bob, { post: { ...oldPostView(), author: { did: config.did, handle: config.handle, avatar: blobUrl(avatar) } } }],
    })
  })
})

describe('profiles', () => {
  const appViewProfile = () => ({
    did: config.did,
    handle: config.handle,
    displayName: 'Old name',
    description: 'old',
    avatar: 'https://cdn.example/old-avatar',
    followersCount: 10,
    postsCount: 3,
  })

  it("getProfile and getProfiles show the newer profile record's fields for the owner only", async () => {
    const banner = await storeBlob('banner')
    await write(PROFILE, { displayName: 'Alice', description: 'new', banner }, 'self')
    const res = await call('app.bsky.actor.getProfile', appView(appViewProfile()), { actor: config.handle })
    const updated = { did: config.did, handle: config.handle, displayName: 'Alice', description: 'new', banner: blobUrl(banner), followersCount: 10, postsCount: 3 }
    expect(await res.json()).toEqual(updated)
    expect(res.headers.get('atproto-upstream-lag')).not.toBeNull()

    const bob = { ...BOB, displayName: 'Bob' }
    expect(await (await call('app.bsky.actor.getProfile', appView(bob))).json()).toEqual(bob)

    const many = await call('app.bsky.actor.getProfiles', appView({ profiles: [bob, appViewProfile()] }))
    expect(await many.json()).toEqual({ profiles: [bob, updated] })
  })

  it('leaves profiles alone when only posts are newer', async () => {
    await write(POST, { text: 'new', createdAt: new Date().toISOString() })
    const res = await call('app.bsky.actor.getProfile', appView(appViewProfile()))
    expect(await res.json()).toEqual(appViewProfile())
  })
})

describe('getPostThread', () => {
  const THREAD = 'app.bsky.feed.defs#threadViewPost'
  const replyTo = (root: { uri: string; cid: string }, parent: { uri: string; cid: string }) => ({
    reply: { root: { uri: root.uri, cid: root.cid }, parent: { uri: parent.uri, cid: parent.cid } },
  })

  it('puts new replies first under their parent, anywhere in the thread', async () => {
    const bobReply = bobPost('r1', '2024-01-02T00:00:00.000Z', replyTo(oldPost, oldPost))
    const toRoot = await write(POST, { text: 'to root', createdAt: new Date().toISOString(), ...replyTo(oldPost, oldPost) })
    const toBob = await write(POST, { text: 'to bob', createdAt: new Date().toISOString(), ...replyTo(oldPost, bobReply) })
    const toMine = await write(POST, { text: 'to mine', createdAt: new Date().toISOString(), ...replyTo(oldPost, toRoot) })
    await write(POST, { text: 'elsewhere', createdAt: new Date().toISOString() })
    const notFound = { $type: 'app.bsky.feed.defs#notFoundPost', uri: `at://${BOB.did}/${POST}/gone`, notFound: true }
    const upstream = {
      thread: { $type: THREAD, post: oldPostView(), replies: [{ $type: THREAD, post: bobReply, replies: [] }, notFound] },
      threadgate: { uri: `at://${config.did}/app.bsky.feed.threadgate/${oldPost.rkey}`, cid: oldPost.cid, record: {} },
    }
    const res = await call('app.bsky.feed.getPostThread', appView(upstream), { uri: oldPost.uri })
    const me = { displayName: 'Old name' }
    expectLag(res, toRoot.indexedAt)
    expect(await res.json()).toEqual({
      ...upstream,
      thread: {
        ...upstream.thread,
        replies: [
          { $type: THREAD, post: localView(toRoot, me), replies: [{ $type: THREAD, post: localView(toMine, me) }] },
          { $type: THREAD, post: bobReply, replies: [{ $type: THREAD, post: localView(toBob, me) }] },
          notFound,
        ],
      },
    })
  })

  it("answers the AppView's NotFound for a new post with a local thread", async () => {
    const mine = await write(POST, { text: 'just posted', createdAt: new Date().toISOString() })
    const reply = await write(POST, { text: 'and replied', createdAt: new Date().toISOString(), ...replyTo(mine, mine) })
    const upstream = appView({ error: 'NotFound', message: `Post not found: ${mine.uri}` }, { status: 400 })
    // Asked for by handle, as clients may.
    const res = await call('app.bsky.feed.getPostThread', upstream, { uri: `at://${config.handle}/${POST}/${mine.rkey}`, depth: '6' })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-appview')).toBe('kept')
    expectLag(res, mine.indexedAt)
    const me = { displayName: 'Old name' }
    expect(await res.json()).toEqual({
      thread: { $type: THREAD, post: localView(mine, me), replies: [{ $type: THREAD, post: localView(reply, me) }] },
    })

    // Another error, or a post the AppView should already have, stays the AppView's answer.
    const other = appView({ error: 'InvalidRequest', message: 'bad' }, { status: 400 })
    const same = await call('app.bsky.feed.getPostThread', other, { uri: mine.uri })
    expect(same.status).toBe(400)
    expect(await same.json()).toEqual({ error: 'InvalidRequest', message: 'bad' })
    const known = appView({ error: 'NotFound', message: 'gone' }, { status: 400 })
    expect(await call('app.bsky.feed.getPostThread', known, { uri: oldPost.uri })).toBe(known)
  })
})
