/**
 * Views of the owner's own records, built locally the way an AppView would
 * show them right after the write (reference PDS: read-after-write/viewer.ts,
 * `LocalViewer`): the post view with zeroed counts and the author from the
 * current profile record, embed views, and profile views patched with a
 * newer profile record.
 */
import type {
  BlobJson,
  LocalDescript,
  PostRecord,
  PostView,
  ProfileRecord,
  ProfileView,
  StrongRef,
  ThreadViewPost,
} from './types'
import { isTypeOf } from './types'

/** What local views are built from: who the owner is, where blobs are served, the current profile. */
export interface Viewer {
  did: string
  handle: string
  serviceUrl: string
  /** The current app.bsky.actor.profile/self record, if any. */
  profile: ProfileRecord | null
}

const blobCid = (blob: BlobJson): string => {
  const cid = blob.ref?.$link ?? blob.cid
  if (typeof cid !== 'string') throw new Error('malformed blob ref')
  return cid
}

/**
 * The reference builds image URLs with the AppView's CDN pattern
 * (`/img/avatar/plain/<did>/<cid>@jpeg`...). We run no image CDN, and the
 * AppView's may not have the blob yet (that is why we are here), so every
 * image points at this PDS's own getBlob, which serves the original bytes.
 * The DID is encoded: a did:web with a port holds a `%3A`.
 */
export const blobUrl = (viewer: Viewer, blob: BlobJson): string =>
  `${viewer.serviceUrl}/xrpc/com.atproto.sync.getBlob?did=${encodeURIComponent(viewer.did)}&cid=${encodeURIComponent(blobCid(blob))}`

const optionalBlobUrl = (viewer: Viewer, blob: BlobJson | undefined): string | undefined =>
  blob ? blobUrl(viewer, blob) : undefined

/** app.bsky.actor.defs#profileViewBasic of the owner, from the current profile record. */
export const ownerBasicView = (viewer: Viewer): ProfileView => ({
  did: viewer.did,
  handle: viewer.handle,
  displayName: viewer.profile?.displayName,
  avatar: optionalBlobUrl(viewer, viewer.profile?.avatar),
})

/** app.bsky.feed.defs#postView of a post the AppView has not indexed yet. */
export const localPostView = (viewer: Viewer, post: LocalDescript<PostRecord>): PostView => ({
  uri: post.uri,
  cid: post.cid,
  // Nobody can have liked, replied to, reposted or quoted it yet.
  likeCount: 0,
  replyCount: 0,
  repostCount: 0,
  quoteCount: 0,
  author: ownerBasicView(viewer),
  record: post.record,
  embed: post.record.embed ? embedView(viewer, post.record.embed) : undefined,
  indexedAt: post.indexedAt,
})

/** A thread node (app.bsky.feed.defs#threadViewPost) holding a local post, without replies. */
export const localThreadView = (viewer: Viewer, post: LocalDescript<PostRecord>): ThreadViewPost => ({
  $type: 'app.bsky.feed.defs#threadViewPost',
  post: localPostView(viewer, post),
})

type Embed = NonNullable<PostRecord['embed']>

interface ImagesEmbed {
  images: { image: BlobJson; alt: string; aspectRatio?: unknown }[]
}

interface ExternalEmbed {
  external: { uri: string; title: string; description: string; thumb?: BlobJson }
}

/**
 * The embed view of a post's embed, for the kinds the reference handles
 * (images, external links, records, record with media); others (video...)
 * get no view until the AppView has them.
 */
const embedView = (viewer: Viewer, embed: Embed): unknown => {
  if (isTypeOf(embed, 'app.bsky.embed.images')) return imagesView(viewer, embed as unknown as ImagesEmbed)
  if (isTypeOf(embed, 'app.bsky.embed.external')) return externalView(viewer, embed as unknown as ExternalEmbed)
  if (isTypeOf(embed, 'app.bsky.embed.record')) return recordView((embed as unknown as { record: StrongRef }).record)
  if (isTypeOf(embed, 'app.bsky.embed.recordWithMedia')) {
    const { record, media } = embed as unknown as { record: { record: StrongRef }; media: Embed }
    const mediaView = isTypeOf(media, 'app.bsky.embed.images')
      ? imagesView(viewer, media as unknown as ImagesEmbed)
      : isTypeOf(media, 'app.bsky.embed.external')
        ? externalView(viewer, media as unknown as ExternalEmbed)
        : null
    if (!mediaView) return undefined
    return { $type: 'app.bsky.embed.recordWithMedia#view', record: recordView(record.record), media: mediaView }
  }
  return undefined
}

const imagesView = (viewer: Viewer, embed: ImagesEmbed) => ({
  $type: 'app.bsky.embed.images#view',
  images: embed.images.map((img) => ({
    // One URL for both sizes: getBlob has no thumbnails (see blobUrl).
    thumb: blobUrl(viewer, img.image),
    fullsize: blobUrl(viewer, img.image),
    aspectRatio: img.aspectRatio,
    alt: img.alt,
  })),
})

const externalView = (viewer: Viewer, embed: ExternalEmbed) => ({
  $type: 'app.bsky.embed.external#view',
  external: {
    uri: embed.external.uri,
    title: embed.external.title,
    description: embed.external.description,
    thumb: optionalBlobUrl(viewer, embed.external.thumb),
  },
})

/**
 * The reference asks the AppView (getPosts, getFeedGenerator, getList) for
 * the quoted record's view. This module gets no AppView client, so the quote
 * shows as not found until the AppView indexes the post, which is what the
 * reference answers when it has no AppView or the record is unknown to it.
 */
const recordView = (ref: StrongRef) => ({
  $type: 'app.bsky.embed.record#view',
  record: { $type: 'app.bsky.embed.record#viewNotFound', uri: ref.uri, notFound: true },
})

/** A profile view (basic, full or detailed) with displayName and avatar from a newer record. */
export const withProfileBasic = <T extends ProfileView>(viewer: Viewer, view: T, record: ProfileRecord): T => ({
  ...view,
  displayName: record.displayName,
  avatar: optionalBlobUrl(viewer, record.avatar),
})

/** ...and the description (app.bsky.actor.defs#profileView fields). */
export const withProfile = <T extends ProfileView>(viewer: Viewer, view: T, record: ProfileRecord): T => ({
  ...withProfileBasic(viewer, view, record),
  description: record.description,
})

/** ...and the banner (app.bsky.actor.defs#profileViewDetailed fields). */
export const withProfileDetailed = <T extends ProfileView>(viewer: Viewer, view: T, record: ProfileRecord): T => ({
  ...withProfile(viewer, view, record),
  banner: optionalBlobUrl(viewer, record.banner),
})
