/**
 * A warm write plans on the head its isolate committed last without reading
 * the root first (src/repo/plan-writes.ts): one D1 round trip. What the read
 * would have checked is a guard of the commit itself, so a change made
 * meanwhile by another isolate (stood in for here by SQL on the same D1, or
 * by an older head put back as the remembered one) must send the write back
 * to read and decide on what is there: never a commit on a stale tree, never
 * a refusal or a no-op decided on one.
 */
import type { Cid } from '@atproto/lex-data'
import { parseCid } from '@atproto/lex-data'
import { beforeEach, describe, expect, it } from 'vitest'
import { AccountInactiveError } from '../../src/account-status'
import { openDb } from '../../src/db/client'
import { getRoot } from '../../src/db/repo'
import { SessionRevokedError } from '../../src/errors'
import { commitWrites, type RepoContext } from '../../src/repo/commit'
import { BlobRefError } from '../../src/repo/errors'
import { forgetHead, rememberHead, rememberedHead, type RepoHead } from '../../src/repo/head'
import { prepareCreate, prepareDelete, prepareUpdate } from '../../src/repo/prepare'
import { linearChain, newRepoContext, prepareThing, recordsOf, THING, verifyStoredRepo, wipeDatabase, workerEnv } from './fixtures'

/** A context over a Db of its own, so its round trips are counted apart. */
const countedContext = async (): Promise<RepoContext> => ({ ...(await newRepoContext({ genesis: false })), db: openDb(workerEnv.DB) })

/** Round trips `fn` made on `ctx`'s Db. */
const tripsOf = async (ctx: RepoContext, fn: () => Promise<unknown>): Promise<number> => {
  const before = ctx.db.stats.queries
  await fn()
  return ctx.db.stats.queries - before
}

/** The head this isolate remembers now (it must have one). */
const currentHead = (ctx: RepoContext): RepoHead => {
  const head = rememberedHead(ctx.db)
  if (!head) throw new Error('no remembered head')
  return head
}

const sql = (query: string, ...params: unknown[]) =>
  workerEnv.DB.prepare(query)
    .bind(...params)
    .run()

const blobRef = (ref: Cid, mimeType: string, size: number) => ({ $type: 'blob', ref, mimeType, size })
const BLOB = parseCid('bafkreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm')

describe('a write planned on the remembered head', () => {
  let ctx: RepoContext

  beforeEach(async () => {
    await wipeDatabase()
    forgetHead()
    await newRepoContext()
    ctx = await countedContext()
    // The first write of a cold isolate reads first; it leaves the head remembered.
    expect(await tripsOf(ctx, async () => commitWrites(ctx, [await prepareThing(ctx.did, 'warm-up', 'warm')]))).toBe(2)
  })

  it('commits in one D1 round trip, on the current root', async () => {
    const rootBefore = (await getRoot(ctx.db))!.cid
    const write = await prepareThing(ctx.did, 'one trip', 'one')
    let result: Awaited<ReturnType<typeof commitWrites>> = null
    expect(await tripsOf(ctx, async () => (result = await commitWrites(ctx, [write])))).toBe(1)
    const chain = await linearChain()
    expect(chain[0].cid).toBe(result!.cid.toString())
    expect(chain[0].prev).toBe(rootBefore)
    expect([...recordsOf(await verifyStoredRepo(ctx)).keys()].sort()).toEqual([`${THING}/one`, `${THING}/warm`])
  })

  it('another isolate committed since: refused by D1, then planned on the new root', async () => {
    const stale = currentHead(ctx)
    await commitWrites(ctx, [await prepareThing(ctx.did, 'elsewhere', 'elsewhere')])
    const newRoot = (await getRoot(ctx.db))!.cid
    rememberHead(stale)
    // The guarded commit (refused), then the read and the commit.
    const trips = await tripsOf(ctx, async () => commitWrites(ctx, [await prepareThing(ctx.did, 'after', 'after')]))
    expect(trips).toBe(3)
    const chain = await linearChain()
    expect(chain[1].cid).toBe(newRoot)
    expect([...recordsOf(await verifyStoredRepo(ctx)).keys()].sort()).toEqual([`${THING}/after`, `${THING}/elsewhere`, `${THING}/warm`])
  })

  it('a remembered head that is not in the chain at all (the database was reset): never a commit on it', async () => {
    await wipeDatabase()
    await newRepoContext() // a new genesis; this isolate still remembers the old head
    const result = await commitWrites(ctx, [await prepareThing(ctx.did, 'fresh', 'fresh')])
    const chain = await linearChain()
    expect(chain).toHaveLength(2)
    expect(chain[0].cid).toBe(result!.cid.toString())
    expect([...recordsOf(await verifyStoredRepo(ctx)).keys()]).toEqual([`${THING}/fresh`])
  })

  it('a refusal is never decided on a stale tree: a record deleted elsewhere can be created again', async () => {
    const withWarm = currentHead(ctx)
    await commitWrites(ctx, [prepareDelete({ did: ctx.did, collection: THING, rkey: 'warm' })])
    rememberHead(withWarm)
    // On the remembered tree the key still exists ("Record already exists"); on the root it does not.
    const again = await commitWrites(ctx, [await prepareThing(ctx.did, 'again', 'warm')])
    expect(again!.ops.map((o) => o.action)).toEqual(['create'])
    expect([...recordsOf(await verifyStoredRepo(ctx)).keys()]).toEqual([`${THING}/warm`])
  })

  it('nor a no-op: a put back to the old value after an update elsewhere commits', async () => {
    const original = currentHead(ctx)
    const first = await prepareThing(ctx.did, 'warm-up', 'warm')
    await commitWrites(ctx, [{ ...(await prepareUpdate({ did: ctx.did, collection: THING, rkey: 'warm', record: { value: 'changed' } })), action: 'update' }])
    rememberHead(original)
    // The remembered tree holds this very record, so the put looks identical there.
    const put = await commitWrites(ctx, [{ ...first, action: 'put' }])
    expect(put?.ops.map((o) => o.action)).toEqual(['update'])
    expect(recordsOf(await verifyStoredRepo(ctx)).get(`${THING}/warm`)).toBe(first.cid.toString())
  })

  it('the account deactivated elsewhere: refused, nothing written; while it is active, one round trip', async () => {
    await sql("INSERT INTO account (did, handle, status, created_at) VALUES (?, 'owner.test', 'active', '2026-01-01T00:00:00.000Z')", ctx.did)
    expect(await tripsOf(ctx, async () => commitWrites(ctx, [await prepareThing(ctx.did, 'active', 'active')]))).toBe(1)
    const root = (await getRoot(ctx.db))!.cid
    await sql("UPDATE account SET status = 'deactivated'")
    await expect(commitWrites(ctx, [await prepareThing(ctx.did, 'no', 'no')])).rejects.toBeInstanceOf(AccountInactiveError)
    expect((await getRoot(ctx.db))!.cid).toBe(root)
  })

  it('the session signed out elsewhere: refused, nothing written; while it is live, one round trip', async () => {
    await sql("INSERT INTO refresh_token (id, did, expires_at, session_id) VALUES ('t1', ?, '2999-01-01T00:00:00.000Z', 's1')", ctx.did)
    expect(await tripsOf(ctx, async () => commitWrites(ctx, [await prepareThing(ctx.did, 'live', 'live')], { liveSession: 's1' }))).toBe(1)
    const root = (await getRoot(ctx.db))!.cid
    await sql("DELETE FROM refresh_token WHERE session_id = 's1'")
    await expect(commitWrites(ctx, [await prepareThing(ctx.did, 'no', 'no')], { liveSession: 's1' })).rejects.toBeInstanceOf(SessionRevokedError)
    expect((await getRoot(ctx.db))!.cid).toBe(root)
  })

  it('blobs: a held blob as referenced commits in one round trip; another MIME type or a removed blob is refused as a read would', async () => {
    await sql("INSERT INTO blob (cid, r2_key, mime_type, size, created_at) VALUES (?, 'k', 'image/png', 1234, '2026-01-01T00:00:00.000Z')", BLOB.toString())
    const withImage = (rkey: string, mimeType: string) =>
      prepareCreate({ did: ctx.did, collection: THING, rkey, record: { image: blobRef(BLOB, mimeType, 1234) } })
    expect(await tripsOf(ctx, async () => commitWrites(ctx, [await withImage('img', 'image/png')]))).toBe(1)
    const root = (await getRoot(ctx.db))!.cid
    await expect(commitWrites(ctx, [await withImage('jpeg', 'image/jpeg')])).rejects.toMatchObject({ name: BlobRefError.name, error: 'InvalidMimeType' })
    await sql('DELETE FROM record_blob')
    await sql('DELETE FROM blob')
    await expect(commitWrites(ctx, [await withImage('gone', 'image/png')])).rejects.toMatchObject({ error: 'BlobNotFound' })
    expect((await getRoot(ctx.db))!.cid).toBe(root)
  })

  it('a follow whose subject was followed elsewhere replaces that follow in the same commit', async () => {
    const follow = (subject: string) =>
      prepareCreate({ did: ctx.did, collection: 'app.bsky.graph.follow', record: { subject, createdAt: new Date().toISOString() } })
    const first = await follow('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa')
    expect(await tripsOf(ctx, async () => commitWrites(ctx, [first], { replaceBacklinks: true }))).toBe(1)
    const second = await follow('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa')
    const result = await commitWrites(ctx, [second], { replaceBacklinks: true })
    expect(result!.ops.map((o) => [o.action, o.path])).toEqual([
      ['delete', `app.bsky.graph.follow/${first.rkey}`],
      ['create', `app.bsky.graph.follow/${second.rkey}`],
    ])
    expect([...recordsOf(await verifyStoredRepo(ctx)).keys()].sort()).toEqual([`${THING}/warm`, `app.bsky.graph.follow/${second.rkey}`].sort())
  })
})
