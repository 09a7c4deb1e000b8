/**
 * An independent firehose verifier: checks `#commit` frames of
 * com.atproto.sync.subscribeRepos the way a relay does under sync v1.1
 * (https://atproto.com/specs/sync#commit-validation), using only
 * `@atproto/repo` primitives and the frame's own bytes.
 *
 * For one frame: the CAR root is `commit`; the commit block decodes, names
 * the repo and the rev, and its signature verifies against the account's
 * did:key; `since` is the previous frame's rev; the MST loaded ONLY from the
 * frame's blocks holds every op's result; and undoing the ops on that partial
 * tree yields `prevData`. A missing MST node makes the last two checks fail,
 * which is the point: a relay has nothing else to go on.
 *
 * Checks return lists of problems instead of throwing, so a test can report
 * every bad frame at once.
 */
import { decode, decodeAll } from '@atproto/lex-cbor'
import { type Cid, isCid } from '@atproto/lex-data'
import { type BlockMap, MST, MemoryBlockstore, readCarWithRoot, verifyCommitSig } from '@atproto/repo'

export interface FrameHeader {
  op: number
  t?: string
}

/** One WebSocket message, decoded: header, body and the raw bytes. */
export interface Frame {
  header: FrameHeader
  body: Record<string, unknown>
  bytes: Uint8Array
}

export interface CommitOp {
  action: 'create' | 'update' | 'delete'
  path: string
  cid: Cid | null
  prev?: Cid
}

/** A decoded `#commit` body (fields as the lexicon names them). */
export interface CommitBody {
  seq: number
  repo: string
  commit: Cid
  rev: string
  since: string | null
  blocks: Uint8Array
  ops: CommitOp[]
  prevData?: Cid
  blobs: Cid[]
  time: string
  rebase: boolean
  tooBig: boolean
}

/** Decodes a frame: exactly two DAG-CBOR objects, header then body. */
export const decodeFrame = (bytes: Uint8Array): Frame => {
  const parts = [...decodeAll(bytes)]
  if (parts.length !== 2) throw new Error(`frame has ${parts.length} CBOR objects, expected 2 (header, body)`)
  const [header, body] = parts as [FrameHeader, Record<string, unknown>]
  if (typeof header !== 'object' || header === null || typeof header.op !== 'number') {
    throw new Error(`frame header is not {op, t?}: ${JSON.stringify(header)}`)
  }
  return { header, body, bytes }
}

/** True for a `#commit` message frame. */
export const isCommitFrame = (frame: Frame): boolean => frame.header.op === 1 && frame.header.t === '#commit'

/** Seq of a message frame (NaN if it has none). */
export const seqOf = (frame: Frame): number => (typeof frame.body.seq === 'number' ? frame.body.seq : Number.NaN)

const errorText = (err: unknown): string => (err instanceof Error ? `${err.name}: ${err.message}` : String(err))

const cidText = (cid: unknown): string => (isCid(cid) ? cid.toString() : JSON.stringify(cid) ?? String(cid))

const sameCid = (a: unknown, b: unknown): boolean => isCid(a) && isCid(b) && a.equals(b)

/** Shape checks of the body fields (sync v1.1 `#commit`). */
const checkShape = (body: Record<string, unknown>): string[] => {
  const problems: string[] = []
  const expect = (ok: boolean, what: string): void => {
    if (!ok) problems.push(what)
  }
  expect(Number.isInteger(body.seq) && (body.seq as number) > 0, `seq is not a positive integer: ${body.seq}`)
  expect(typeof body.repo === 'string' && body.repo.startsWith('did:'), `repo is not a DID: ${body.repo}`)
  expect(isCid(body.commit), `commit is not a CID: ${cidText(body.commit)}`)
  expect(typeof body.rev === 'string' && body.rev.length === 13, `rev is not a TID: ${body.rev}`)
  expect(body.since === null || typeof body.since === 'string', `since is neither null nor a string: ${body.since}`)
  expect(body.blocks instanceof Uint8Array, 'blocks is not bytes')
  expect(Array.isArray(body.ops), 'ops is not an array')
  expect(Array.isArray(body.blobs) && body.blobs.every((b) => isCid(b)), 'blobs is not an array of CIDs')
  expect(typeof body.time === 'string' && !Number.isNaN(Date.parse(body.time)), `time is not a datetime: ${body.time}`)
  expect(body.rebase === false, `rebase is ${body.rebase}, expected false`)
  expect(body.tooBig === false, `tooBig is ${body.tooBig}, expected false`)
  // Every commit but the first has a previous data root to invert to.
  if (body.since !== null) expect(isCid(body.prevData), `prevData missing or not a CID: ${cidText(body.prevData)}`)
  if (body.prevData !== undefined) expect(isCid(body.prevData), `prevData is not a CID: ${cidText(body.prevData)}`)
  for (const [i, op] of ((Array.isArray(body.ops) ? body.ops : []) as Record<string, unknown>[]).entries()) {
    const where = `ops[${i}] (${op.action} ${op.path})`
    expect(['create', 'update', 'delete'].includes(op.action as string), `${where}: unknown action`)
    expect(typeof op.path === 'string' && /^[^/]+\/[^/]+$/.test(op.path), `${where}: path is not collection/rkey`)
    if (op.action === 'delete') expect(op.cid === null, `${where}: delete with cid ${cidText(op.cid)}`)
    else expect(isCid(op.cid), `${where}: cid missing`)
    // sync v1.1: prev is required for update and delete, absent for create.
    if (op.action === 'create') expect(op.prev === undefined, `${where}: create with prev ${cidText(op.prev)}`)
    else expect(isCid(op.prev), `${where}: prev missing (needed to invert the op)`)
  }
  return problems
}

/**
 * Undoes `ops` (last first) on `tree`: create → delete the key, update → set
 * the key back to `prev`, delete → add the key with `prev`. Throws if the tree
 * lacks a node it needs.
 */
export const invertOps = async (tree: MST, ops: readonly CommitOp[]): Promise<MST> => {
  let mst = tree
  for (const op of [...ops].reverse()) {
    if (op.action === 'create') mst = await mst.delete(op.path)
    else if (op.action === 'update') mst = await mst.update(op.path, op.prev as Cid)
    else mst = await mst.add(op.path, op.prev as Cid)
  }
  return mst
}

export interface VerifyOptions {
  /** did:key of the account's signing key (from its DID document). */
  didKey: string
  /**
   * Rev of the previous commit of this repo in the stream: `since` must equal
   * it. `null` means this is the repo's first commit; `undefined` skips the
   * check (the previous frame is unknown).
   */
  prevRev?: string | null
}

export interface CommitCheck {
  problems: string[]
  /** The CAR's blocks (null if the CAR did not parse). */
  blocks: BlockMap | null
  /** The commit's MST root (`data`), when the commit block decoded. */
  data: Cid | null
}

/** Verifies one decoded `#commit` body; returns every problem found. */
export const verifyCommitBody = async (rawBody: Record<string, unknown>, opts: VerifyOptions): Promise<CommitCheck> => {
  const problems = checkShape(rawBody)
  const body = rawBody as unknown as CommitBody
  const result: CommitCheck = { problems, blocks: null, data: null }
  if (opts.prevRev !== undefined && body.since !== opts.prevRev) {
    problems.push(`since is ${body.since}, expected the previous rev ${opts.prevRev}`)
  }
  if (!(body.blocks instanceof Uint8Array) || !isCid(body.commit)) return result

  // The CAR: parsed with CID verification on, rooted at the commit.
  let car: { root: Cid; blocks: BlockMap }
  try {
    car = await readCarWithRoot(body.blocks)
  } catch (err) {
    problems.push(`blocks is not a valid CAR: ${errorText(err)}`)
    return result
  }
  result.blocks = car.blocks
  if (!car.root.equals(body.commit)) problems.push(`CAR root ${car.root} is not the commit ${body.commit}`)

  // The signed commit.
  const commitBytes = car.blocks.get(body.commit)
  if (!commitBytes) {
    problems.push(`commit block ${body.commit} is not in the CAR`)
    return result
  }
  let commit: Record<string, unknown>
  try {
    commit = decode(commitBytes) as Record<string, unknown>
  } catch (err) {
    problems.push(`commit block does not decode: ${errorText(err)}`)
    return result
  }
  if (commit.version !== 3) problems.push(`commit version is ${commit.version}, expected 3`)
  if (commit.did !== body.repo) problems.push(`commit did ${commit.did} is not the frame's repo ${body.repo}`)
  if (commit.rev !== body.rev) problems.push(`commit rev ${commit.rev} is not the frame's rev ${body.rev}`)
  if (!(commit.sig instanceof Uint8Array)) problems.push('commit has no sig bytes')
  else {
    try {
      const ok = await verifyCommitSig(commit as never, opts.didKey)
      if (!ok) problems.push(`commit signature does not verify against ${opts.didKey}`)
    } catch (err) {
      problems.push(`commit signature check failed: ${errorText(err)}`)
    }
  }
  if (!isCid(commit.data)) {
    problems.push(`commit data is not a CID: ${cidText(commit.data)}`)
    return result
  }
  const data = commit.data
  result.data = data
  if (!Array.isArray(body.ops)) return result

  // The new tree, from the frame's blocks only.
  const storage = new MemoryBlockstore()
  await storage.putMany(car.blocks)
  // A relay refuses a commit that names a path twice (indigo: "duplicate path"): each op is inverted on its own.
  const seenPaths = new Set<string>()
  for (const op of body.ops) {
    if (seenPaths.has(op.path)) problems.push(`duplicate path in ops: ${op.path}`)
    seenPaths.add(op.path)
  }
  for (const op of body.ops) {
    const where = `${op.action} ${op.path}`
    try {
      const found = await MST.load(storage, data).get(op.path)
      if (op.action === 'delete') {
        if (found !== null) problems.push(`${where}: the new tree still holds ${found}`)
      } else if (!found || !sameCid(found, op.cid)) {
        problems.push(`${where}: the new tree holds ${found}, op says ${cidText(op.cid)}`)
      }
    } catch (err) {
      problems.push(`${where}: cannot look the key up in the frame's MST: ${errorText(err)}`)
    }
    if (op.action !== 'delete' && isCid(op.cid) && !car.blocks.has(op.cid)) {
      problems.push(`${where}: record block ${op.cid} is not in the CAR`)
    }
  }

  // Inversion: undo the ops on the partial tree; the root must be prevData.
  if (isCid(body.prevData) && problems.every((p) => !p.includes('prev missing'))) {
    try {
      const inverted = await invertOps(MST.load(storage, data), body.ops)
      const root = await inverted.getPointer()
      if (!root.equals(body.prevData)) {
        problems.push(`inverting the ops gives ${root}, not prevData ${body.prevData}`)
      }
    } catch (err) {
      problems.push(`inverting the ops on the frame's MST failed: ${errorText(err)}`)
    }
  }
  return result
}

/** Checks a `#sync` body (sync v1.1): a CAR whose root is a commit of this repo, at this rev, signed by its key. */
export const verifySyncBody = async (body: Record<string, unknown>, opts: { didKey: string; repo: string }): Promise<string[]> => {
  const problems: string[] = []
  if (body.did !== opts.repo) problems.push(`#sync did ${body.did}, expected ${opts.repo}`)
  if (typeof body.rev !== 'string' || body.rev.length !== 13) problems.push(`#sync rev is not a TID: ${body.rev}`)
  if (!(body.blocks instanceof Uint8Array)) return [...problems, '#sync blocks is not bytes']
  try {
    const car = await readCarWithRoot(body.blocks)
    const commit = decode(car.blocks.get(car.root) ?? new Uint8Array()) as Record<string, unknown>
    if (commit.did !== opts.repo) problems.push(`#sync commit did ${commit.did}`)
    if (commit.rev !== body.rev) problems.push(`#sync commit rev ${commit.rev} is not the event's rev ${body.rev}`)
    if (!(await verifyCommitSig(commit as never, opts.didKey))) problems.push(`#sync commit signature does not verify against ${opts.didKey}`)
  } catch (err) {
    problems.push(`#sync blocks do not hold a readable commit: ${errorText(err)}`)
  }
  return problems
}

/** Shape checks of `#identity` and `#account` bodies (they carry no repo data to verify). */
const checkAccountOrIdentity = (type: string, body: Record<string, unknown>, repo: string): string[] => {
  const problems: string[] = []
  if (body.did !== repo) problems.push(`${type} did ${body.did}, expected ${repo}`)
  if (typeof body.time !== 'string' || Number.isNaN(Date.parse(body.time))) problems.push(`${type} time is not a datetime: ${body.time}`)
  if (type === '#identity' && body.handle !== undefined && typeof body.handle !== 'string') problems.push('#identity handle is not a string')
  if (type === '#account') {
    if (typeof body.active !== 'boolean') problems.push(`#account active is not a boolean: ${body.active}`)
    if (body.active === false && typeof body.status !== 'string') problems.push('#account inactive without a status')
  }
  return problems
}

/**
 * Checks a stream of frames for one repo in delivery order: seq strictly
 * increases (and with `contiguous`, by exactly 1) across all frames; every
 * `#commit` verifies, its rev increases and its `since` chains to the
 * previous commit's rev; `#identity`/`#account` frames are well formed for
 * the repo; anything else (errors, unknown types) is a problem. Problems
 * accumulate, prefixed with the frame's seq.
 */
export class StreamChecker {
  readonly problems: string[] = []
  lastSeq: number | null
  lastRev: string | null | undefined
  count = 0
  commits = 0
  syncs = 0

  constructor(
    private readonly opts: { didKey: string; repo: string; contiguous?: boolean },
    /** Where the stream starts: the seq of the frame before it and the rev of the commit before it, if known. */
    start: { seq?: number | null; rev?: string | null } = {},
  ) {
    this.lastSeq = start.seq ?? null
    this.lastRev = start.rev
  }

  async check(frame: Frame): Promise<CommitCheck | null> {
    const seq = seqOf(frame)
    const tag = `seq ${seq}`
    this.count++
    if (frame.header.op !== 1) {
      this.problems.push(`${tag}: error frame ${JSON.stringify(frame.body)}`)
      return null
    }
    if (this.lastSeq !== null) {
      if (!(seq > this.lastSeq)) this.problems.push(`${tag}: seq does not increase (previous ${this.lastSeq})`)
      else if (this.opts.contiguous && seq !== this.lastSeq + 1) {
        this.problems.push(`${tag}: gap after seq ${this.lastSeq}`)
      }
    }
    if (!Number.isNaN(seq)) this.lastSeq = seq
    else this.problems.push(`${tag}: ${frame.header.t} frame without an integer seq`)
    if (frame.header.t === '#identity' || frame.header.t === '#account') {
      for (const p of checkAccountOrIdentity(frame.header.t, frame.body, this.opts.repo)) this.problems.push(`${tag}: ${p}`)
      return null
    }
    if (frame.header.t === '#sync') {
      // A relay resets the repo to this commit: it must be signed by the DID's key; later commits chain from its rev.
      for (const p of await verifySyncBody(frame.body, this.opts)) this.problems.push(`${tag}: ${p}`)
      this.lastRev = String(frame.body.rev)
      this.syncs++
      return null
    }
    if (!isCommitFrame(frame)) {
      this.problems.push(`${tag}: unexpected frame type ${JSON.stringify(frame.header)}`)
      return null
    }
    this.commits++
    const body = frame.body as unknown as CommitBody
    if (body.repo !== this.opts.repo) this.problems.push(`${tag}: repo ${body.repo}, expected ${this.opts.repo}`)
    if (typeof this.lastRev === 'string' && !(body.rev > this.lastRev)) {
      this.problems.push(`${tag}: rev ${body.rev} does not increase (previous ${this.lastRev})`)
    }
    const result = await verifyCommitBody(frame.body, { didKey: this.opts.didKey, prevRev: this.lastRev })
    for (const p of result.problems) this.problems.push(`${tag}: ${p}`)
    this.lastRev = body.rev
    return result
  }

  async checkAll(frames: readonly Frame[]): Promise<string[]> {
    for (const frame of frames) await this.check(frame)
    return this.problems
  }
}

/**
 * Folds the ops of a stream of commit frames into the record set they
 * describe ("collection/rkey" → CID string), starting from `initial`.
 */
export const foldOps = (frames: readonly Frame[], initial: Map<string, string> = new Map()): Map<string, string> => {
  const records = new Map(initial)
  for (const frame of frames.filter(isCommitFrame)) {
    for (const op of (frame.body as unknown as CommitBody).ops) {
      if (op.action === 'delete') records.delete(op.path)
      else records.set(op.path, String(op.cid))
    }
  }
  return records
}
