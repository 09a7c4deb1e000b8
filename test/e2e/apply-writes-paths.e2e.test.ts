/**
 * applyWrites with several actions on ONE record path, checked relay-side:
 * every pair and triple of create/update/delete, on a path that exists
 * before the call and on one that does not.
 *
 * A model says which sequences are valid (create needs the path free, update
 * and delete need it taken, each step seeing the ones before). Valid calls
 * answer 200 with one result per action, as the reference does, and commit
 * only the NET change per path (create+update = one create of the final
 * record, create+delete = nothing, update+delete = one delete of the
 * original), so every #commit frame passes sync 1.1 verification: no
 * duplicate path, ops match the frame's MST, inversion yields prevData from
 * the frame's blocks alone (helpers/firehose-verify.ts, plus @atproto/sync's
 * authenticated parser). Invalid calls answer 400 and change nothing.
 */
import { beforeAll, describe, expect, test } from 'bun:test'
import { parseCommitAuthenticated } from '@atproto/sync'
import type { PdsProcess } from './harness'
import { resolveAtprotoKey, type Subscriber, subscribe } from './helpers/firehose-client'
import { type CommitBody, isCommitFrame, StreamChecker } from './helpers/firehose-verify'
import { usePds } from './use-pds'
import { expectStatus, xget, xpost, type XrpcResponse } from './xrpc-client'

type Action = 'create' | 'update' | 'delete'
const ACTIONS: Action[] = ['create', 'update', 'delete']
const COLLECTION = 'com.example.pathcase'

let pds: PdsProcess
let token: string
usePds((started, accessJwt) => {
  pds = started
  token = accessJwt
})

let didKey: string
let live: Subscriber

/** Every sequence of `length` actions. */
const sequences = (length: number): Action[][] =>
  length === 0 ? [[]] : sequences(length - 1).flatMap((seq) => ACTIONS.map((a) => [...seq, a]))

/** The model: is the sequence valid, and what does the path hold after it (a value or nothing)? */
const model = (existsBefore: boolean, actions: Action[], values: string[]): { valid: boolean; final: string | null } => {
  let current: string | null = existsBefore ? 'before' : null
  for (const [i, action] of actions.entries()) {
    if (action === 'create' ? current !== null : current === null) return { valid: false, final: null }
    current = action === 'delete' ? null : values[i]
  }
  return { valid: true, final: current }
}

const write = (action: Action, rkey: string, value: string) =>
  action === 'delete'
    ? { $type: 'com.atproto.repo.applyWrites#delete', collection: COLLECTION, rkey }
    : { $type: `com.atproto.repo.applyWrites#${action}`, collection: COLLECTION, rkey, value: { $type: COLLECTION, value } }

const applyWrites = (writes: unknown[]): Promise<XrpcResponse> => xpost(pds, 'com.atproto.repo.applyWrites', { repo: pds.did, writes }, token)

const head = async (): Promise<string> => expectStatus(await xget(pds, 'com.atproto.sync.getLatestCommit', { did: pds.did }), 200).body.cid

const readValue = async (rkey: string): Promise<string | null> => {
  const res = await xget(pds, 'com.atproto.repo.getRecord', { repo: pds.did, collection: COLLECTION, rkey })
  if (res.status === 400 && res.body?.error === 'RecordNotFound') return null
  return expectStatus(res, 200).body.value.value
}

beforeAll(async () => {
  didKey = await resolveAtprotoKey(pds)
  live = await subscribe(pds)
  // "No cursor" means from now on: write until the socket has seen a commit.
  for (let i = 0; ; i++) {
    const res = expectStatus(await applyWrites([write('create', `warm${i}`, 'warm')]), 200)
    try {
      await live.waitForCommit(res.body.commit.cid, 3_000)
      break
    } catch (err) {
      if (i >= 4) throw err
    }
  }
}, 60_000)

describe('applyWrites: several actions on one path', () => {
  const cases = [false, true].flatMap((existsBefore) => [...sequences(2), ...sequences(3)].map((actions) => ({ existsBefore, actions })))

  test(`all ${cases.length} pairs and triples, on an existing and a missing path: valid ones commit the net change and verify relay-side`, async () => {
    const checker = new StreamChecker({ didKey, repo: pds.did })
    const framesFrom = live.frames.length
    const failures: string[] = []
    let commits = 0
    for (const [n, { existsBefore, actions }] of cases.entries()) {
      const rkey = `p${n}`
      const label = `${existsBefore ? 'existing' : 'missing'} path, ${actions.join('+')}`
      if (existsBefore) expectStatus(await applyWrites([write('create', rkey, 'before')]), 200)
      const values = actions.map((_, i) => `${rkey}-v${i}`)
      const expected = model(existsBefore, actions, values)
      const before = await head()
      const res = await applyWrites(actions.map((a, i) => write(a, rkey, values[i])))
      if (!expected.valid) {
        if (res.status !== 400 || res.body?.error !== 'InvalidRequest') failures.push(`${label}: expected 400 InvalidRequest, got ${res.status} ${res.text}`)
        if ((await head()) !== before) failures.push(`${label}: a refused call changed the repo`)
        if ((await readValue(rkey)) !== (existsBefore ? 'before' : null)) failures.push(`${label}: a refused call changed the record`)
        continue
      }
      if (res.status !== 200) {
        failures.push(`${label}: expected 200, got ${res.status} ${res.text}`)
        continue
      }
      const results = res.body.results as { $type: string }[]
      const resultTypes = results.map((r) => r.$type.split('#')[1])
      if (resultTypes.join() !== actions.map((a) => `${a}Result`).join()) failures.push(`${label}: results ${resultTypes.join()}`)
      if ((await readValue(rkey)) !== expected.final) failures.push(`${label}: the record holds ${await readValue(rkey)}, expected ${expected.final}`)
      const changed = (existsBefore ? 'before' : null) !== expected.final
      if (!changed) {
        if (res.body.commit !== undefined || (await head()) !== before) failures.push(`${label}: no net change, but a commit was made`)
        continue
      }
      commits++
      await live.waitForCommit(res.body.commit.cid)
      const frame = live.frames.find((f) => String(f.body.commit) === res.body.commit.cid)!
      const ops = (frame.body as unknown as CommitBody).ops
      const netAction = !existsBefore ? 'create' : expected.final === null ? 'delete' : 'update'
      if (ops.length !== 1 || ops[0].action !== netAction || ops[0].path !== `${COLLECTION}/${rkey}`) {
        failures.push(`${label}: ops ${JSON.stringify(ops.map((o) => `${o.action} ${o.path}`))}, expected one ${netAction}`)
      }
    }
    // Every frame of the run, in order, as a relay sees them.
    const frames = live.frames.slice(framesFrom)
    const problems = await checker.checkAll(frames)
    const idResolver = { did: { resolveAtprotoKey: async () => didKey } }
    for (const frame of frames.filter(isCommitFrame)) {
      const body = frame.body as unknown as CommitBody
      try {
        const events = await parseCommitAuthenticated(idResolver as never, body as never)
        const got = events.map((e) => `${e.event} ${e.collection}/${e.rkey}`)
        const want = body.ops.map((op) => `${op.action} ${op.path}`)
        if (got.join() !== want.join()) problems.push(`seq ${body.seq}: @atproto/sync verified ${got}, the frame has ${want}`)
      } catch (err) {
        problems.push(`seq ${body.seq}: @atproto/sync refused the commit: ${err}`)
      }
    }
    expect(failures).toEqual([])
    expect(problems).toEqual([])
    expect(frames.filter(isCommitFrame).length).toBe(commits + cases.filter((c) => c.existsBefore).length)
  }, 120_000)
})
