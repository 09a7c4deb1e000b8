/**
 * The JSON shapes read-after-write touches: just the fields of the
 * app.bsky lexicon views and records (app.bsky.feed.defs, app.bsky.actor.defs,
 * app.bsky.feed.post, app.bsky.actor.profile) that it reads or writes. The
 * upstream body has been validated against the method's output lexicon before
 * any of these are trusted; every other field passes through untouched.
 */

/** A blob ref in JSON form: `{$type: 'blob', ref: {$link}}`, or the legacy `{cid, mimeType}`. */
export interface BlobJson {
  $type?: string
  ref?: { $link?: string }
  cid?: string
  mimeType?: string
}

export interface ProfileRecord {
  displayName?: string
  description?: string
  avatar?: BlobJson
  banner?: BlobJson
}

export interface StrongRef {
  uri: string
  cid: string
}

export interface PostRecord {
  reply?: { root: StrongRef; parent: StrongRef }
  embed?: { $type?: string } & Record<string, unknown>
}

/** app.bsky.actor.defs#profileViewBasic (and the wider profile views, which extend it). */
export interface ProfileView {
  did: string
  handle: string
  displayName?: string
  description?: string
  avatar?: string
  banner?: string
  [key: string]: unknown
}

/** app.bsky.feed.defs#postView */
export interface PostView {
  uri: string
  cid: string
  author: ProfileView
  record: unknown
  embed?: unknown
  indexedAt: string
  [key: string]: unknown
}

/** app.bsky.feed.defs#feedViewPost */
export interface FeedViewPost {
  post: PostView
  reason?: { $type?: string; by?: { did: string } }
  [key: string]: unknown
}

/** app.bsky.feed.defs#threadViewPost */
export interface ThreadViewPost {
  $type?: string
  post: PostView
  parent?: unknown
  replies?: unknown[]
  [key: string]: unknown
}

/** A local record the AppView has not seen, as the munges use it (reference: RecordDescript). */
export interface LocalDescript<T> {
  uri: string
  cid: string
  indexedAt: string
  record: T
}

/** The owner's writes newer than the AppView's rev that read-after-write can show (reference: LocalRecords). */
export interface LocalRecords {
  /** All newer records, whatever their collection: zero means nothing to do. */
  count: number
  profile: LocalDescript<ProfileRecord> | null
  posts: LocalDescript<PostRecord>[]
}

/**
 * The lexicon's "is this union member of type X": an object without `$type`
 * counts too, as `$isTypeOf` does in @atproto/lex-schema (which the reference uses).
 */
export const isTypeOf = (value: unknown, type: string): boolean => {
  if (typeof value !== 'object' || value === null) return false
  const $type = (value as { $type?: unknown }).$type
  return $type === undefined || $type === type
}
