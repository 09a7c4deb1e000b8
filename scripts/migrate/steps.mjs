/**
 * The steps of an account migration between two PDSes (atproto.com/guides/
 * account-migration), the same XRPC calls `goat account migrate` makes, in
 * its order, each one resumable:
 *
 *   account   createAccount on the new PDS with a service token from the old (skipped once it exists there)
 *   repo      getRepo from the old, streamed into importRepo on the new (skipped when the heads already match)
 *   prefs     getPreferences → putPreferences
 *   blobs     only what listMissingBlobs says is missing: getBlob → uploadBlob
 *   verify    same records (path → CID) from both CARs, every blob byte for byte, same preferences
 *   identity  PLC operation: recommended credentials (new), signed by the old with the emailed code, submitted by the new
 *   activate  the new PDS checks the DID document and goes live
 *   retire    deactivateAccount on the old: only after everything above verified
 */
import { createHash } from 'node:crypto'
import { MemoryBlockstore, MST, readCarWithRoot } from '@atproto/repo'
import { decode } from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { progressBar, size } from './progress.mjs'
import { XrpcCallError } from './xrpc.mjs'

export const STEPS = ['account', 'repo', 'prefs', 'blobs', 'verify', 'identity', 'activate', 'retire']

/** Records of a repo CAR: "collection/rkey" → CID (the MST walked from the commit). */
const carRecords = async (bytes) => {
  const { root, blocks } = await readCarWithRoot(bytes)
  const commit = decode(blocks.get(root))
  const storage = new MemoryBlockstore(blocks)
  const records = new Map()
  for await (const leaf of MST.load(storage, CID.asCID(commit.data) ?? CID.parse(String(commit.data))).walkLeavesFrom('')) records.set(leaf.key, leaf.value.toString())
  return { head: root.toString(), records }
}

const download = async (pds, nsid, params) => new Uint8Array(await (await pds.call(nsid, { params, raw: true })).arrayBuffer())

/** Streams the old repo into the new PDS, counting bytes for the progress bar. */
const copyRepo = async (ctx) => {
  const res = await ctx.from.call('com.atproto.sync.getRepo', { params: { did: ctx.did }, raw: true })
  const bar = progressBar('repo', undefined)
  let bytes = 0
  const counted = res.body.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        bytes += chunk.byteLength
        bar.update('streaming', bytes)
        controller.enqueue(chunk)
      },
    }),
  )
  await ctx.to.call('com.atproto.repo.importRepo', { body: counted, headers: { 'content-type': 'application/vnd.ipld.car' } })
  bar.done('imported', bytes)
}

const allPages = async (pds, nsid, params, key) => {
  const out = []
  let cursor
  do {
    const page = await pds.call(nsid, { params: { ...params, limit: 500, cursor } })
    out.push(...page[key])
    cursor = page[key].length > 0 ? page.cursor : undefined
  } while (cursor)
  return out
}

export const steps = {
  async account(ctx) {
    const { did: aud } = await ctx.to.call('com.atproto.server.describeServer')
    const { token } = await ctx.from.call('com.atproto.server.getServiceAuth', {
      params: { aud, lxm: 'com.atproto.server.createAccount', exp: Math.floor(Date.now() / 1000) + 60 },
    })
    let note = 'created, deactivated until the end'
    try {
      await ctx.to.call('com.atproto.server.createAccount', {
        token,
        body: {
          did: ctx.did,
          handle: ctx.newHandle,
          password: ctx.newPassword,
          ...(ctx.email ? { email: ctx.email } : {}),
          ...(ctx.inviteCode ? { inviteCode: ctx.inviteCode } : {}),
        },
      })
    } catch (err) {
      // A resumed migration: the account is there already.
      if (!(err instanceof XrpcCallError && err.error === 'AlreadyExists')) throw err
      note = 'already there'
    }
    const { pds } = await ctx.to.login(ctx.did, ctx.newPassword)
    return { to: pds, note }
  },

  async repo(ctx) {
    const { cid: oldHead } = await ctx.from.call('com.atproto.sync.getLatestCommit', { params: { did: ctx.did } })
    const { repoCommit } = await ctx.to.call('com.atproto.server.checkAccountStatus')
    if (repoCommit === oldHead) return { note: `already imported (${oldHead})` }
    await copyRepo(ctx)
    return { note: `imported ${oldHead}` }
  },

  async prefs(ctx) {
    const { preferences } = await ctx.from.call('app.bsky.actor.getPreferences')
    await ctx.to.call('app.bsky.actor.putPreferences', { body: { preferences } })
    return { note: `${preferences.length} preferences` }
  },

  async blobs(ctx) {
    const missing = await allPages(ctx.to, 'com.atproto.repo.listMissingBlobs', {}, 'blobs')
    const bar = progressBar('blobs', missing.length)
    let bytes = 0
    for (const [i, { cid }] of missing.entries()) {
      const blob = await download(ctx.from, 'com.atproto.sync.getBlob', { did: ctx.did, cid })
      await ctx.to.call('com.atproto.repo.uploadBlob', { body: blob, headers: { 'content-type': '*/*' } })
      bytes += blob.byteLength
      bar.update(i + 1, bytes)
    }
    bar.done(missing.length, bytes)
    return { note: missing.length ? `${missing.length} copied, ${size(bytes)}` : 'none missing' }
  },

  async verify(ctx) {
    const [oldRepo, newRepo] = await Promise.all([
      download(ctx.from, 'com.atproto.sync.getRepo', { did: ctx.did }).then(carRecords),
      download(ctx.to, 'com.atproto.sync.getRepo', { did: ctx.did }).then(carRecords),
    ])
    const differing = [...oldRepo.records].filter(([path, cid]) => newRepo.records.get(path) !== cid).map(([path]) => path)
    const extra = [...newRepo.records.keys()].filter((path) => !oldRepo.records.has(path))
    if (differing.length + extra.length > 0) throw new Error(`the repos differ: ${[...differing, ...extra].slice(0, 5).join(', ')}${differing.length + extra.length > 5 ? ', …' : ''}`)
    const cids = await allPages(ctx.from, 'com.atproto.sync.listBlobs', { did: ctx.did }, 'cids')
    const bar = progressBar('check blobs', cids.length)
    for (const [i, cid] of cids.entries()) {
      const bytes = await download(ctx.to, 'com.atproto.sync.getBlob', { did: ctx.did, cid })
      const digest = createHash('sha256').update(bytes).digest()
      if (!Buffer.from(CID.parse(cid).multihash.digest).equals(digest)) throw new Error(`blob ${cid} differs on the new PDS`)
      bar.update(i + 1)
    }
    bar.done(cids.length)
    const [a, b] = await Promise.all([ctx.from.call('app.bsky.actor.getPreferences'), ctx.to.call('app.bsky.actor.getPreferences')])
    if (JSON.stringify(a.preferences) !== JSON.stringify(b.preferences)) throw new Error('the preferences differ')
    return { note: `${oldRepo.records.size} records, ${cids.length} blobs and the preferences are identical` }
  },

  async identity(ctx) {
    const status = await ctx.to.call('com.atproto.server.checkAccountStatus')
    if (status.validDid) return { note: 'the DID document already names the new PDS' }
    const credentials = await ctx.to.call('com.atproto.identity.getRecommendedDidCredentials')
    if (ctx.keepRotationKeys?.length) credentials.rotationKeys = [...ctx.keepRotationKeys, ...credentials.rotationKeys]
    await ctx.from.call('com.atproto.identity.requestPlcOperationSignature', { method: 'POST' })
    const token = await ctx.plcToken()
    const { operation } = await ctx.from.call('com.atproto.identity.signPlcOperation', { body: { ...credentials, token } })
    await ctx.to.call('com.atproto.identity.submitPlcOperation', { body: { operation } })
    const after = await ctx.to.call('com.atproto.server.checkAccountStatus')
    if (!after.validDid) throw new Error('the DID document does not name the new PDS yet')
    return { note: 'the DID document names the new PDS and its keys' }
  },

  async activate(ctx) {
    await ctx.to.call('com.atproto.server.activateAccount', { method: 'POST' })
    return { note: 'live on the new PDS' }
  },

  async retire(ctx) {
    const status = await ctx.from.call('com.atproto.sync.getRepoStatus', { params: { did: ctx.did } })
    if (status.active === false) return { note: 'already deactivated on the old PDS' }
    await ctx.from.call('com.atproto.server.deactivateAccount', { body: {} })
    return { note: 'deactivated on the old PDS' }
  },
}

export { XrpcCallError }
