/**
 * A realistic mixed write workload for the firehose suites, driven through the
 * official client (`@atproto/api` AtpAgent): posts, likes, follows, profile
 * puts, post edits, deletes and applyWrites batches mixing all three actions.
 *
 * It tracks the repo as the client sees it, so each call comes back with the
 * ops its commit must carry (action, path, new CID, previous CID) and the
 * commit the server reported: what a firehose frame is compared against.
 */
import type { AtpAgent } from '@atproto/api'
import { TID } from '@atproto/common-web'

export interface ExpectedOp {
  action: 'create' | 'update' | 'delete'
  path: string
  cid: string | null
  /** The record's CID before the op (update, delete). */
  prev?: string
}

export interface WriteResult {
  kind: string
  commit: { cid: string; rev: string }
  ops: ExpectedOp[]
}

interface LiveRecord {
  cid: string
  uri: string
  collection: string
  /** For likes and follows: what they point at (the server keeps one per subject). */
  subject?: string
}

/** Deterministic PRNG (mulberry32), so a failing run can be replayed with its seed. */
export const prng = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const POST = 'app.bsky.feed.post'
const LIKE = 'app.bsky.feed.like'
const FOLLOW = 'app.bsky.graph.follow'
const PROFILE = 'app.bsky.actor.profile'
const B32 = 'abcdefghijklmnopqrstuvwxyz234567'

const pathOf = (uri: string): string => uri.split('/').slice(3).join('/')

type WriteSpec =
  | { $type: 'com.atproto.repo.applyWrites#create'; collection: string; rkey?: string; value: Record<string, unknown> }
  | { $type: 'com.atproto.repo.applyWrites#update'; collection: string; rkey: string; value: Record<string, unknown> }
  | { $type: 'com.atproto.repo.applyWrites#delete'; collection: string; rkey: string }

/** Drives writes against one account and remembers what each commit must contain. */
export class Workload {
  /** "collection/rkey" → the record as the client last wrote it. */
  readonly live = new Map<string, LiveRecord>()
  readonly results: WriteResult[] = []
  private readonly rand: () => number
  private n = 0

  constructor(
    private readonly agent: AtpAgent,
    private readonly did: string,
    seed: number,
  ) {
    this.rand = prng(seed)
  }

  private pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[Math.floor(this.rand() * items.length)]
  }

  private liveOf(collection: string): [string, LiveRecord][] {
    return [...this.live].filter(([, r]) => r.collection === collection)
  }

  private likedSubjects(): Set<string> {
    return new Set(this.liveOf(LIKE).map(([, r]) => r.subject ?? ''))
  }

  private newDid(): string {
    let s = ''
    for (let i = 0; i < 24; i++) s += B32[Math.floor(this.rand() * 32)]
    return `did:plc:${s}`
  }

  private postValue(): Record<string, unknown> {
    return { $type: POST, text: `firehose e2e post ${++this.n} ${this.rand().toString(36).slice(2)}`, createdAt: new Date().toISOString() }
  }

  private record(kind: string, commit: { cid: string; rev: string } | undefined, ops: ExpectedOp[]): WriteResult {
    if (!commit) throw new Error(`${kind}: the server made no commit`)
    const result = { kind, commit, ops }
    this.results.push(result)
    return result
  }

  private setLive(path: string, rec: LiveRecord | null): void {
    if (rec) this.live.set(path, rec)
    else this.live.delete(path)
  }

  async createPost(): Promise<WriteResult> {
    const res = await this.agent.com.atproto.repo.createRecord({ repo: this.did, collection: POST, record: this.postValue() })
    const path = pathOf(res.data.uri)
    this.setLive(path, { cid: res.data.cid, uri: res.data.uri, collection: POST })
    return this.record('post', res.data.commit, [{ action: 'create', path, cid: res.data.cid }])
  }

  /** Likes a live post; `again` likes one already liked (the server then deletes the old like in the same commit). */
  async like(again = false): Promise<WriteResult | null> {
    const liked = this.likedSubjects()
    const target = this.pick(this.liveOf(POST).filter(([, r]) => liked.has(r.uri) === again))
    if (!target) return null
    const [, post] = target
    const old = again ? this.liveOf(LIKE).find(([, r]) => r.subject === post.uri) : undefined
    const res = await this.agent.com.atproto.repo.createRecord({
      repo: this.did,
      collection: LIKE,
      record: { $type: LIKE, subject: { uri: post.uri, cid: post.cid }, createdAt: new Date().toISOString() },
    })
    const path = pathOf(res.data.uri)
    const ops: ExpectedOp[] = []
    if (old) {
      ops.push({ action: 'delete', path: old[0], cid: null, prev: old[1].cid })
      this.setLive(old[0], null)
    }
    ops.push({ action: 'create', path, cid: res.data.cid })
    this.setLive(path, { cid: res.data.cid, uri: res.data.uri, collection: LIKE, subject: post.uri })
    return this.record(again ? 'like-again' : 'like', res.data.commit, ops)
  }

  async follow(): Promise<WriteResult> {
    const subject = this.newDid()
    const res = await this.agent.com.atproto.repo.createRecord({
      repo: this.did,
      collection: FOLLOW,
      record: { $type: FOLLOW, subject, createdAt: new Date().toISOString() },
    })
    const path = pathOf(res.data.uri)
    this.setLive(path, { cid: res.data.cid, uri: res.data.uri, collection: FOLLOW, subject })
    return this.record('follow', res.data.commit, [{ action: 'create', path, cid: res.data.cid }])
  }

  /** putRecord of the profile: a create the first time, an update afterwards. */
  async putProfile(): Promise<WriteResult> {
    const path = `${PROFILE}/self`
    const before = this.live.get(path)
    const res = await this.agent.com.atproto.repo.putRecord({
      repo: this.did,
      collection: PROFILE,
      rkey: 'self',
      record: { $type: PROFILE, displayName: `Alice ${++this.n}`, description: `profile revision ${this.n}` },
    })
    this.setLive(path, { cid: res.data.cid, uri: res.data.uri, collection: PROFILE })
    const op: ExpectedOp = before
      ? { action: 'update', path, cid: res.data.cid, prev: before.cid }
      : { action: 'create', path, cid: res.data.cid }
    return this.record(before ? 'profile-update' : 'profile-create', res.data.commit, [op])
  }

  /** putRecord over a live post: an update. */
  async editPost(): Promise<WriteResult | null> {
    const target = this.pick(this.liveOf(POST))
    if (!target) return null
    const [path, old] = target
    const rkey = path.split('/')[1]!
    const res = await this.agent.com.atproto.repo.putRecord({ repo: this.did, collection: POST, rkey, record: this.postValue() })
    this.setLive(path, { ...old, cid: res.data.cid })
    return this.record('post-edit', res.data.commit, [{ action: 'update', path, cid: res.data.cid, prev: old.cid }])
  }

  /** deleteRecord of a live post, like or follow. */
  async deleteOne(): Promise<WriteResult | null> {
    const target = this.pick([...this.live].filter(([, r]) => r.collection !== PROFILE))
    if (!target) return null
    const [path, old] = target
    const [collection, rkey] = path.split('/') as [string, string]
    const res = await this.agent.com.atproto.repo.deleteRecord({ repo: this.did, collection, rkey })
    this.setLive(path, null)
    return this.record(`delete-${collection.split('.').pop()}`, res.data.commit, [{ action: 'delete', path, cid: null, prev: old.cid }])
  }

  /** One applyWrites call with `size` writes on distinct paths, mixing creates, updates and deletes. */
  async batch(size: number): Promise<WriteResult> {
    const touched = new Set<string>()
    const specs: WriteSpec[] = []
    const planned: { spec: WriteSpec; prev?: LiveRecord; path?: string; subject?: string }[] = []
    const liked = this.likedSubjects()
    for (let i = 0; i < size; i++) {
      const roll = this.rand()
      const untouched = [...this.live].filter(([p, r]) => !touched.has(p) && r.collection !== PROFILE)
      if (roll < 0.3 || untouched.length === 0) {
        const spec: WriteSpec = { $type: 'com.atproto.repo.applyWrites#create', collection: POST, value: this.postValue() }
        planned.push({ spec })
      } else if (roll < 0.45) {
        // A like with a client-chosen rkey, of a post nothing likes yet.
        const post = this.pick(this.liveOf(POST).filter(([, r]) => !liked.has(r.uri)))
        if (!post) {
          i--
          continue
        }
        liked.add(post[1].uri)
        const rkey = TID.nextStr()
        const spec: WriteSpec = {
          $type: 'com.atproto.repo.applyWrites#create',
          collection: LIKE,
          rkey,
          value: { $type: LIKE, subject: { uri: post[1].uri, cid: post[1].cid }, createdAt: new Date().toISOString() },
        }
        touched.add(`${LIKE}/${rkey}`)
        planned.push({ spec, subject: post[1].uri })
      } else if (roll < 0.7) {
        const post = this.pick(untouched.filter(([, r]) => r.collection === POST))
        if (!post) {
          i--
          continue
        }
        touched.add(post[0])
        const spec: WriteSpec = {
          $type: 'com.atproto.repo.applyWrites#update',
          collection: POST,
          rkey: post[0].split('/')[1]!,
          value: this.postValue(),
        }
        planned.push({ spec, prev: post[1], path: post[0] })
      } else {
        const victim = this.pick(untouched)!
        touched.add(victim[0])
        const [collection, rkey] = victim[0].split('/') as [string, string]
        planned.push({ spec: { $type: 'com.atproto.repo.applyWrites#delete', collection, rkey }, prev: victim[1], path: victim[0] })
      }
    }
    for (const p of planned) specs.push(p.spec)
    const res = await this.agent.com.atproto.repo.applyWrites({ repo: this.did, writes: specs })
    const results = (res.data.results ?? []) as { uri?: string; cid?: string }[]
    if (results.length !== planned.length) throw new Error(`applyWrites returned ${results.length} results for ${planned.length} writes`)
    const ops: ExpectedOp[] = planned.map(({ spec, prev, path, subject }, i) => {
      const result = results[i]!
      if (spec.$type === 'com.atproto.repo.applyWrites#delete') {
        this.setLive(path!, null)
        return { action: 'delete', path: path!, cid: null, prev: prev!.cid }
      }
      const p = pathOf(result.uri!)
      this.setLive(p, { cid: result.cid!, uri: result.uri!, collection: spec.collection, subject: subject ?? prev?.subject })
      return spec.$type === 'com.atproto.repo.applyWrites#create'
        ? { action: 'create', path: p, cid: result.cid! }
        : { action: 'update', path: p, cid: result.cid!, prev: prev!.cid }
    })
    return this.record(`batch-${size}`, res.data.commit, ops)
  }

  /**
   * Runs `count` write calls: a weighted random mix, with every kind present
   * (and one like of an already-liked post, which replaces the older like).
   */
  async runMix(count: number): Promise<WriteResult[]> {
    const start = this.results.length
    const forced: Record<number, () => Promise<WriteResult | null>> = {
      0: () => this.createPost(),
      1: () => this.createPost(),
      2: () => this.putProfile(),
      3: () => this.follow(),
      4: () => this.like(),
      5: () => this.batch(5),
      6: () => this.putProfile(),
      7: () => this.editPost(),
      8: () => this.deleteOne(),
      [Math.floor(count / 2)]: () => this.like(true),
    }
    const triedForced = new Set<number>()
    while (this.results.length - start < count) {
      const i = this.results.length - start
      const roll = this.rand()
      const useForced = forced[i] !== undefined && !triedForced.has(i)
      triedForced.add(i)
      const step =
        (useForced ? forced[i] : undefined) ??
        (roll < 0.3
          ? () => this.createPost()
          : roll < 0.42
            ? () => this.like()
            : roll < 0.52
              ? () => this.follow()
              : roll < 0.58
                ? () => this.putProfile()
                : roll < 0.7
                  ? () => this.editPost()
                  : roll < 0.84
                    ? () => this.deleteOne()
                    : () => this.batch(3 + Math.floor(this.rand() * 5)))
      // A step with nothing to act on (e.g. no unliked post) returns null: roll again.
      await step()
    }
    return this.results.slice(start)
  }
}
