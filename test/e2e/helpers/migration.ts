/**
 * Account migration as `goat account migrate` does it (bluesky-social/goat,
 * account_migrate.go), call for call, written with plain XRPC requests so the
 * same steps move an account from the reference PDS to ours and from ours to
 * the reference. Plus seeding a realistic account on the old PDS and reading
 * back everything that must arrive intact.
 */
import { Database } from 'bun:sqlite'
import { join } from 'node:path'
import { expectStatus, request, xget, xpost, type XrpcResponse } from '../xrpc-client'
import { makePng } from './blobs'

/** One side of a migration: where it is and a full-access session there. */
export interface Side {
  url: string
  token: string
}

export interface MigrationInput {
  did: string
  handle: string
  /** The password the account will have on the new PDS. */
  newPassword: string
  email?: string
  from: Side
  /** The new PDS's base URL. */
  to: string
  /** The code the old PDS issued for signPlcOperation (read from wherever that PDS keeps or mails it). */
  plcToken: () => Promise<string>
}

export interface MigrationReport {
  newSession: Side
  serviceDid: string
  blobsCopied: number
  checkBefore: Record<string, unknown>
}

const ok = (res: XrpcResponse, what: string): XrpcResponse => {
  if (res.status !== 200) throw new Error(`${what}: ${res.status} ${res.text.slice(0, 400)}`)
  return res
}

const authed = (token: string, extra: Record<string, string> = {}): Record<string, string> => ({ authorization: `Bearer ${token}`, ...extra })

/** What the new PDS needs to create the account that is moving in. */
export type NewAccountInput = Pick<MigrationInput, 'did' | 'handle' | 'newPassword' | 'email' | 'from' | 'to'>

/**
 * goat's steps 1-4: the new PDS's service DID, a service token from the old
 * PDS for createAccount there, createAccount (deactivated), and a session on
 * the new PDS. Also what the importRepo benchmark does before it times the
 * import (bench/import.ts).
 */
export const createAccountThere = async (m: NewAccountInput): Promise<{ serviceDid: string; session: Side }> => {
  const target = { url: m.to }
  // 1. the new PDS's service DID
  const serviceDid = ok(await xget(target, 'com.atproto.server.describeServer'), 'describeServer').body.did as string
  // 2. a service token from the old PDS for createAccount on the new one
  const exp = Math.floor(Date.now() / 1000) + 60
  const token = ok(await xget(m.from, 'com.atproto.server.getServiceAuth', { aud: serviceDid, lxm: 'com.atproto.server.createAccount', exp }, m.from.token), 'getServiceAuth')
    .body.token as string
  // 3. createAccount with it
  const created = ok(
    await request(target, '/xrpc/com.atproto.server.createAccount', {
      method: 'POST',
      headers: authed(token, { 'content-type': 'application/json' }),
      body: JSON.stringify({ did: m.did, handle: m.handle, password: m.newPassword, ...(m.email ? { email: m.email } : {}) }),
    }),
    'createAccount',
  )
  if (created.body.did !== m.did) throw new Error(`createAccount answered for ${created.body.did}`)
  // 4. log in there (goat still sends the createAccount token: it must be ignored)
  const session = ok(
    await request(target, '/xrpc/com.atproto.server.createSession', {
      method: 'POST',
      headers: authed(created.body.accessJwt, { 'content-type': 'application/json' }),
      body: JSON.stringify({ identifier: m.did, password: m.newPassword }),
    }),
    'createSession',
  ).body
  return { serviceDid, session: { url: m.to, token: session.accessJwt } }
}

/** goat's sequence (steps numbered as in its source), stopping short of deactivating the old account. */
export const migrate = async (m: MigrationInput): Promise<MigrationReport> => {
  const target = { url: m.to }
  const { serviceDid, session: to } = await createAccountThere(m)
  // 5-6. the repo
  const car = ok(await xget(m.from, 'com.atproto.sync.getRepo', { did: m.did }, m.from.token), 'getRepo').bytes
  ok(
    await request(target, '/xrpc/com.atproto.repo.importRepo', {
      method: 'POST',
      headers: authed(to.token, { 'content-type': 'application/vnd.ipld.car', 'content-length': String(car.byteLength) }),
      body: car,
    }),
    'importRepo',
  )
  // 7-8. preferences
  const prefs = ok(await xget(m.from, 'app.bsky.actor.getPreferences', undefined, m.from.token), 'getPreferences').body.preferences
  ok(await xpost(target, 'app.bsky.actor.putPreferences', { preferences: prefs }, to.token), 'putPreferences')
  // 9. blobs, 100 CIDs a page, each uploaded with Content-Type */* as goat does
  let blobsCopied = 0
  let cursor: string | undefined
  do {
    const page = ok(await xget(m.from, 'com.atproto.sync.listBlobs', { did: m.did, limit: 100, cursor }, m.from.token), 'listBlobs').body
    for (const cid of page.cids as string[]) {
      const blob = ok(await xget(m.from, 'com.atproto.sync.getBlob', { did: m.did, cid }, m.from.token), `getBlob ${cid}`).bytes
      ok(
        await request(target, '/xrpc/com.atproto.repo.uploadBlob', { method: 'POST', headers: authed(to.token, { 'content-type': '*/*' }), body: blob }),
        `uploadBlob ${cid}`,
      )
      blobsCopied++
    }
    cursor = page.cursor
  } while (cursor)
  // 10. status before the identity moves
  const checkBefore = ok(await xget(target, 'com.atproto.server.checkAccountStatus', undefined, to.token), 'checkAccountStatus').body
  // 11-13. the identity: recommended credentials, signed by the old PDS, submitted by the new one
  const recommended = ok(await xget(target, 'com.atproto.identity.getRecommendedDidCredentials', undefined, to.token), 'getRecommendedDidCredentials').body
  const signed = ok(
    await xpost(m.from, 'com.atproto.identity.signPlcOperation', { ...recommended, token: await m.plcToken() }, m.from.token),
    'signPlcOperation',
  ).body.operation
  ok(await xpost(target, 'com.atproto.identity.submitPlcOperation', { operation: signed }, to.token), 'submitPlcOperation')
  // 14. activate on the new PDS
  ok(await xpost(target, 'com.atproto.server.activateAccount', undefined, to.token), 'activateAccount')
  return { newSession: to, serviceDid, blobsCopied, checkBefore }
}

/** 15. deactivate the account on the old PDS (goat sends `{}`). */
export const deactivateOld = async (from: Side): Promise<void> => {
  ok(await xpost(from, 'com.atproto.server.deactivateAccount', {}, from.token), 'deactivateAccount')
}

/** The code the reference PDS issued for signPlcOperation (it keeps it in its account database; no mail here). */
export const referencePlcToken = (dataDir: string, did: string): string => {
  const db = new Database(join(dataDir, 'account.sqlite'), { readonly: true })
  try {
    const row = db.query("SELECT token FROM email_token WHERE purpose = 'plc_operation' AND did = ?").get(did) as { token: string } | null
    if (!row) throw new Error('the reference PDS issued no plc_operation token')
    return row.token
  } finally {
    db.close()
  }
}

export interface Snapshot {
  records: Map<string, string>
  blobs: Map<string, string>
  preferences: unknown[]
}

/** Everything that must arrive intact: records (path → CID from the verified CAR is checked by the caller), blob bytes, preferences. */
export const snapshot = async (side: Side, did: string, records: Map<string, string>): Promise<Snapshot> => {
  const blobs = new Map<string, string>()
  let cursor: string | undefined
  do {
    const page = expectStatus(await xget(side, 'com.atproto.sync.listBlobs', { did, limit: 100, cursor }, side.token), 200).body
    for (const cid of page.cids as string[]) {
      const bytes = expectStatus(await xget(side, 'com.atproto.sync.getBlob', { did, cid }, side.token), 200).bytes
      blobs.set(cid, Buffer.from(bytes).toString('base64'))
    }
    cursor = page.cursor
  } while (cursor)
  const preferences = expectStatus(await xget(side, 'app.bsky.actor.getPreferences', undefined, side.token), 200).body.preferences
  return { records, blobs, preferences }
}

const applyWrites = async (side: Side, did: string, writes: unknown[]): Promise<XrpcResponse> =>
  ok(await xpost(side, 'com.atproto.repo.applyWrites', { repo: did, writes }, side.token), 'applyWrites')

const uploadPng = async (side: Side, n: number): Promise<Record<string, unknown>> =>
  ok(await request(side, '/xrpc/com.atproto.repo.uploadBlob', { method: 'POST', headers: authed(side.token, { 'content-type': 'image/png' }), body: makePng(8 + n, 8 + n) }), 'uploadBlob')
    .body.blob

const now = (): string => new Date().toISOString()
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'

/**
 * A lived-in account: a profile with avatar and banner (edited twice), posts
 * (some with images, some deleted), likes, follows, a list with items, and
 * preferences. Returns the number of records it leaves.
 */
export const seedAccount = async (side: Side, did: string, opts: { posts: number } = { posts: 150 }): Promise<void> => {
  const [avatar, banner, ...images] = await Promise.all([0, 1, 2, 3, 4].map((n) => uploadPng(side, n)))
  const profile = (displayName: string) => ({ $type: 'app.bsky.actor.profile', displayName, description: 'migrating', avatar, banner })
  await applyWrites(side, did, [{ $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.actor.profile', rkey: 'self', value: profile('Alice') }])
  const writes: unknown[] = []
  for (let i = 0; i < opts.posts; i++) {
    const embed = i < images.length ? { $type: 'app.bsky.embed.images', images: [{ image: images[i], alt: `picture ${i}` }] } : undefined
    writes.push({ $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', value: { $type: 'app.bsky.feed.post', text: `post ${i}`, createdAt: now(), ...(embed ? { embed } : {}) } })
  }
  const posts: { uri: string; cid: string }[] = []
  for (let i = 0; i < writes.length; i += 100) {
    const res = await applyWrites(side, did, writes.slice(i, i + 100))
    posts.push(...(res.body.results as { uri: string; cid: string }[]))
  }
  const social: unknown[] = []
  for (const p of posts.slice(0, 60)) {
    social.push({ $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.like', value: { $type: 'app.bsky.feed.like', subject: { uri: p.uri, cid: p.cid }, createdAt: now() } })
  }
  for (let i = 0; i < 40; i++) {
    const subject = `did:plc:${'a'.repeat(22)}${BASE32[Math.floor(i / 32)]}${BASE32[i % 32]}`
    social.push({ $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.graph.follow', value: { $type: 'app.bsky.graph.follow', subject, createdAt: now() } })
  }
  await applyWrites(side, did, social)
  const list = await applyWrites(side, did, [
    { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.graph.list', value: { $type: 'app.bsky.graph.list', purpose: 'app.bsky.graph.defs#curatelist', name: 'friends', createdAt: now() } },
  ])
  const listUri = (list.body.results as { uri: string }[])[0].uri
  await applyWrites(
    side,
    did,
    Array.from({ length: 10 }, (_, i) => ({
      $type: 'com.atproto.repo.applyWrites#create',
      collection: 'app.bsky.graph.listitem',
      value: { $type: 'app.bsky.graph.listitem', list: listUri, subject: `did:plc:${'c'.repeat(23)}${'abcdefghij'[i]}`, createdAt: now() },
    })),
  )
  // Updates and deletes, so the repo has a history.
  await applyWrites(side, did, [{ $type: 'com.atproto.repo.applyWrites#update', collection: 'app.bsky.actor.profile', rkey: 'self', value: profile('Alice A.') }])
  await applyWrites(
    side,
    did,
    posts.slice(-10).map((p) => ({ $type: 'com.atproto.repo.applyWrites#delete', collection: 'app.bsky.feed.post', rkey: p.uri.split('/').pop() })),
  )
  ok(
    await xpost(side, 'app.bsky.actor.putPreferences', {
      preferences: [
        { $type: 'app.bsky.actor.defs#adultContentPref', enabled: false },
        { $type: 'app.bsky.actor.defs#savedFeedsPrefV2', items: [{ id: '3k', type: 'timeline', value: 'following', pinned: true }] },
        { $type: 'app.bsky.actor.defs#threadViewPref', sort: 'oldest' },
      ],
    }, side.token),
    'putPreferences',
  )
}
