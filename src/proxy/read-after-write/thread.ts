/**
 * Read-after-write for app.bsky.feed.getPostThread (reference PDS:
 * api/app/bsky/feed/getPostThread.ts): new local replies join the thread
 * under their parent, and a post the AppView answers NotFound for, because
 * it has not indexed it yet, is served from the local record.
 */
import type { LocalDescript, LocalRecords, PostRecord, ThreadViewPost } from './types'
import { isTypeOf } from './types'
import { localThreadView, type Viewer } from './views'

const THREAD_VIEW_POST = 'app.bsky.feed.defs#threadViewPost'

interface ThreadBody {
  thread: unknown
  [key: string]: unknown
}

/** Local posts in the same thread: replies whose root is this post or this post's root. */
const postsInThread = (thread: ThreadViewPost, posts: LocalDescript<PostRecord>[]): LocalDescript<PostRecord>[] =>
  posts.filter((post) => {
    const rootUri = post.record.reply?.root.uri
    if (!rootUri) return false
    return rootUri === thread.post.uri || (thread.post.record as PostRecord | undefined)?.reply?.root.uri === rootUri
  })

/** Puts `post` first among the replies of its parent, wherever that parent sits in the tree. */
const insertReply = (viewer: Viewer, view: ThreadViewPost, post: LocalDescript<PostRecord>): ThreadViewPost => {
  if (post.record.reply?.parent.uri === view.post.uri) {
    return { ...view, replies: [localThreadView(viewer, post), ...(view.replies ?? [])] }
  }
  if (!view.replies) return view
  return {
    ...view,
    replies: view.replies.map((reply) => (isTypeOf(reply, THREAD_VIEW_POST) ? insertReply(viewer, reply as ThreadViewPost, post) : reply)),
  }
}

const addPostsToThread = (viewer: Viewer, thread: ThreadViewPost, posts: LocalDescript<PostRecord>[]): ThreadViewPost => {
  let out = thread
  // Oldest first, so a reply to a reply we just added finds its parent.
  for (const post of postsInThread(thread, posts)) out = insertReply(viewer, out, post)
  return out
}

/** A thread the AppView found: add the owner's new replies to it. */
export const mungePostThread = (body: ThreadBody, local: LocalRecords, viewer: Viewer): ThreadBody => {
  // A notFoundPost or blockedPost at the top is left as it is (the reference does too).
  if (!isTypeOf(body.thread, THREAD_VIEW_POST)) return body
  return { ...body, thread: addPostsToThread(viewer, body.thread as ThreadViewPost, local.posts) }
}

/**
 * The AppView answered NotFound for `uri`: if it is one of the owner's new
 * posts, answer with a thread built locally, with the other new posts as
 * replies. Returns null when the post is not a local one.
 *
 * The reference also fetches the new post's parents from the AppView
 * (getPostThread on the highest known parent, errors ignored). We get no
 * AppView client here, so the thread has no `parent` until the AppView has
 * indexed the post.
 */
export const localPostThread = (uri: string, local: LocalRecords, viewer: Viewer): ThreadBody | null => {
  const found = local.posts.find((p) => p.uri === uri)
  if (!found) return null
  const rest = local.posts.filter((p) => p.uri !== uri)
  return { thread: addPostsToThread(viewer, localThreadView(viewer, found), rest) }
}
