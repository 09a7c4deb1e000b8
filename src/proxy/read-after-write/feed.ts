/**
 * Read-after-write for feeds (reference PDS: api/app/bsky/feed/getTimeline,
 * getAuthorFeed, getActorLikes): new local posts are slotted into the feed by
 * indexedAt, and the owner's posts show the newer profile.
 */
import type { FeedViewPost, LocalDescript, LocalRecords, PostRecord } from './types'
import { isTypeOf } from './types'
import { localPostView, type Viewer, withProfileBasic } from './views'

interface FeedBody {
  feed: FeedViewPost[]
  [key: string]: unknown
}

/**
 * Inserts the local posts newer than the feed's last item, each before the
 * first item older than it. As in the reference this applies to any page
 * (a later page gets them too), since the cursor is opaque to the PDS.
 */
const insertPosts = (viewer: Viewer, feed: FeedViewPost[], posts: LocalDescript<PostRecord>[]): FeedViewPost[] => {
  if (posts.length === 0) return feed
  const out = [...feed]
  const lastTime = out.at(-1)?.post.indexedAt ?? new Date(0).toISOString()
  const newestFirst = posts.filter((p) => p.indexedAt > lastTime).reverse()
  for (const descript of newestFirst) {
    const post = localPostView(viewer, descript)
    const at = out.findIndex((item) => item.post.indexedAt < post.indexedAt)
    if (at >= 0) out.splice(at, 0, { post })
    else out.push({ post })
  }
  return out
}

/** The owner's posts in the feed get the displayName and avatar of the newer profile record. */
const refreshOwnerAuthor = (viewer: Viewer, feed: FeedViewPost[], local: LocalRecords): FeedViewPost[] => {
  const profile = local.profile
  if (!profile) return feed
  return feed.map((item) =>
    item.post.author.did === viewer.did
      ? { ...item, post: { ...item.post, author: withProfileBasic(viewer, item.post.author, profile.record) } }
      : item,
  )
}

/** app.bsky.feed.getTimeline: every new local post (replies included) joins the timeline. */
export const mungeTimeline = (body: FeedBody, local: LocalRecords, viewer: Viewer): FeedBody => ({
  ...body,
  feed: insertPosts(viewer, body.feed, local.posts),
})

/**
 * Whether an author feed is the owner's: the reference looks at the first
 * item only (a post by the owner, or the owner's repost), so an empty feed
 * is never munged.
 */
const isOwnersFeed = (feed: FeedViewPost[], did: string): boolean => {
  const first = feed.at(0)
  if (!first) return false
  if (!first.reason) return first.post.author.did === did
  return isTypeOf(first.reason, 'app.bsky.feed.defs#reasonRepost') && first.reason.by?.did === did
}

/** app.bsky.feed.getAuthorFeed: on the owner's own feed, newer profile and new posts. */
export const mungeAuthorFeed = (body: FeedBody, local: LocalRecords, viewer: Viewer): FeedBody => {
  if (!isOwnersFeed(body.feed, viewer.did)) return body
  const feed = refreshOwnerAuthor(viewer, body.feed, local)
  return { ...body, feed: insertPosts(viewer, feed, local.posts) }
}

/** app.bsky.feed.getActorLikes: only the newer profile on the owner's posts (new likes are not added, as in the reference). */
export const mungeActorLikes = (body: FeedBody, local: LocalRecords, viewer: Viewer): FeedBody => ({
  ...body,
  feed: refreshOwnerAuthor(viewer, body.feed, local),
})
