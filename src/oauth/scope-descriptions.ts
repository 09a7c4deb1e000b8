/**
 * What a scope lets an app do, in plain words for the consent and account
 * pages, grouped by what it touches ("Posts and other records", "Direct
 * messages", ...). Pure: the permission sets a scope includes are passed in.
 * Anything this server would grant is described; nothing is left out, so the
 * owner never approves more than the page says.
 */
import {
  AccountPermission,
  BlobPermission,
  IdentityPermission,
  IncludeScope,
  RepoPermission,
  RpcPermission,
  type LexiconPermissionSet,
} from '@atproto/oauth-scopes'

export interface PermissionGroup {
  title: string
  /** A sentence under the title (a permission set's own description). */
  detail?: string
  items: string[]
  /** Worth a second look: direct messages, identity, account management. */
  sensitive: boolean
}

/** Collections people know by name (plural nouns); others are shown by NSID. */
const COLLECTION_NAMES: Record<string, string> = {
  'app.bsky.feed.post': 'posts',
  'app.bsky.feed.like': 'likes',
  'app.bsky.feed.repost': 'reposts',
  'app.bsky.feed.threadgate': 'reply settings of posts',
  'app.bsky.feed.postgate': 'quote settings of posts',
  'app.bsky.feed.generator': 'custom feeds',
  'app.bsky.graph.follow': 'follows',
  'app.bsky.graph.block': 'blocks',
  'app.bsky.graph.list': 'lists',
  'app.bsky.graph.listitem': 'list members',
  'app.bsky.graph.listblock': 'list blocks',
  'app.bsky.graph.starterpack': 'starter packs',
  'app.bsky.actor.profile': 'your profile',
  'app.bsky.actor.status': 'your status',
  'chat.bsky.actor.declaration': 'your chat settings',
}

const VERBS: Record<string, string> = { create: 'create', update: 'edit', delete: 'delete' }

/** "create, edit and delete" */
const listWords = (words: string[]): string => (words.length <= 1 ? (words[0] ?? '') : `${words.slice(0, -1).join(', ')} and ${words.at(-1)}`)

const capitalise = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1)

const collectionName = (nsid: string): string => (nsid === '*' ? 'any kind of record' : COLLECTION_NAMES[nsid] ? `${COLLECTION_NAMES[nsid]} (${nsid})` : `${nsid} records`)

const describeRepo = (p: RepoPermission): string[] =>
  p.collection.map((c) => `${capitalise(listWords(p.action.map((a) => VERBS[a])))} ${collectionName(c)}`)

const MIME_NAMES: Record<string, string> = { '*/*': 'files of any type', 'image/*': 'images', 'video/*': 'videos', 'audio/*': 'audio files', 'text/*': 'text files' }

const describeBlob = (p: BlobPermission): string => `Upload ${listWords(p.accept.map((m) => MIME_NAMES[m] ?? `${m} files`))}`

/** `did:web:api.bsky.app#bsky_appview` → "the Bluesky AppView (did:web:api.bsky.app)". */
const serviceName = (aud: string): string => {
  if (aud === '*') return 'any service'
  const [did, service] = aud.split('#')
  const known: Record<string, string> = { bsky_appview: 'the AppView', bsky_chat: 'the chat service', atproto_labeler: 'the moderation service', bsky_fg: 'a feed generator', bsky_notif: 'the notification service' }
  return `${known[service] ?? `service "${service}"`} at ${did}`
}

const describeRpc = (p: RpcPermission): string =>
  `Call ${p.lxm.includes('*') ? 'any method' : listWords(p.lxm.map((m) => m))} as you at ${serviceName(p.aud)}`

const describeAccount = (p: AccountPermission): string => {
  const manage = p.action.includes('manage')
  switch (p.attr) {
    case 'email':
      return manage ? 'See, confirm and change your email address' : 'See your email address'
    case 'repo':
      return manage ? 'Import a whole repository into your account, replacing its records' : 'Read your repository settings'
    default:
      return manage ? 'Deactivate or reactivate your account' : 'See whether your account is active'
  }
}

const describeIdentity = (p: IdentityPermission): string =>
  p.attr === 'handle' ? 'Change your handle' : 'Change your handle and update your identity (DID document, signing keys)'

interface Buckets {
  records: string[]
  files: string[]
  services: string[]
  chat: string[]
  email: string[]
  account: string[]
  identity: string[]
}

const add = (buckets: Buckets, value: string): void => {
  const repo = RepoPermission.fromString(value)
  if (repo) return void buckets.records.push(...describeRepo(repo))
  const blob = BlobPermission.fromString(value)
  if (blob) return void buckets.files.push(describeBlob(blob))
  const rpc = RpcPermission.fromString(value)
  if (rpc) return void (rpc.lxm.every((m) => m.startsWith('chat.bsky.')) ? buckets.chat : buckets.services).push(describeRpc(rpc))
  const account = AccountPermission.fromString(value)
  if (account) return void (account.attr === 'email' ? buckets.email : buckets.account).push(describeAccount(account))
  const identity = IdentityPermission.fromString(value)
  if (identity) return void buckets.identity.push(describeIdentity(identity))
  switch (value) {
    case 'transition:generic':
      buckets.records.push('Create, edit and delete any kind of record in your repository (posts, likes, follows, your profile, ...)')
      buckets.files.push('Upload images, videos and other files')
      buckets.services.push('Use Bluesky and other atproto services as you (timelines, notifications, feeds), like an app password')
      return
    case 'transition:chat.bsky':
      buckets.chat.push('Read and send your direct messages (act on your behalf with chat.bsky)')
      return
    case 'transition:email':
      buckets.email.push('See your email address')
  }
}

const groupsOf = (b: Buckets): PermissionGroup[] =>
  [
    { title: 'Posts and other records', items: b.records, sensitive: false },
    { title: 'Files', items: b.files, sensitive: false },
    { title: 'Apps and services', items: b.services, sensitive: false },
    { title: 'Direct messages', items: b.chat, sensitive: true },
    { title: 'Email', items: b.email, sensitive: false },
    { title: 'Your account', items: b.account, sensitive: true },
    { title: 'Your identity', items: b.identity, sensitive: true },
  ].filter((g) => g.items.length > 0)

const emptyBuckets = (): Buckets => ({ records: [], files: [], services: [], chat: [], email: [], account: [], identity: [] })

/** The groups for a scope; `sets` holds the permission sets it includes (by NSID). */
export const describeScope = (scope: string, sets: Map<string, LexiconPermissionSet>, handle: string): PermissionGroup[] => {
  const own = emptyBuckets()
  const included: PermissionGroup[] = []
  for (const value of scope.split(' ').filter(Boolean)) {
    const include = IncludeScope.fromString(value)
    if (!include) {
      add(own, value)
      continue
    }
    const set = sets.get(include.nsid)
    const buckets = emptyBuckets()
    for (const permission of set ? include.toScopes(set) : []) add(buckets, permission)
    const items = groupsOf(buckets).flatMap((g) => g.items)
    included.push({
      title: set?.['title:lang']?.en ?? set?.title ?? include.nsid,
      ...(set?.detail || set?.['detail:lang']?.en ? { detail: set?.['detail:lang']?.en ?? set?.detail } : {}),
      items: items.length ? items : ['Nothing this server recognises'],
      sensitive: false,
    })
  }
  return [{ title: 'Who you are', items: [`Know that you are @${handle} (your handle and DID)`], sensitive: false }, ...included, ...groupsOf(own)]
}
