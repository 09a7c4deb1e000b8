/**
 * Write workloads: app.bsky.feed.post records created through the official
 * client (com.atproto.repo.createRecord), sequentially or from several
 * clients at once, timing each call from request to parsed response.
 */
import type { AtpAgent } from '@atproto/api'

export interface WriteRun {
  /** Per-write latency, ms. */
  latencies: number[]
  /** Wall time of the whole run, ms. */
  wallMs: number
  /** Responses, in completion order: the commit rev and record path of each write. */
  commits: { rev: string; path: string; respondedAt: number }[]
  /** Writes that failed (counted, not timed; the run goes on). */
  errors: string[]
}

const describe = (err: unknown): string => {
  const e = err as { status?: number; error?: string; message?: string }
  return [e.status, e.error, e.message].filter((x) => x !== undefined && x !== '').join(' ') || String(err)
}

/** One write into `run`: timed if it succeeds, counted if it fails. */
const recordWrite = async (run: WriteRun, agent: AtpAgent, did: string): Promise<void> => {
  try {
    const w = await createPost(agent, did)
    run.latencies.push(w.ms)
    run.commits.push(w)
  } catch (err) {
    run.errors.push(describe(err))
  }
}

let counter = 0

/** A small, valid post (same shape for both servers). */
export const post = (): { $type: string; text: string; createdAt: string } => ({
  $type: 'app.bsky.feed.post',
  text: `benchmark post number ${++counter}: the quick brown fox jumps over the lazy dog`,
  createdAt: new Date().toISOString(),
})

/** One timed createRecord. */
export const createPost = async (agent: AtpAgent, did: string): Promise<{ ms: number; rev: string; path: string; respondedAt: number }> => {
  const t0 = performance.now()
  const res = await agent.com.atproto.repo
    .createRecord({ repo: did, collection: 'app.bsky.feed.post', record: post() })
    .catch((err: unknown) => {
      throw new Error(`createRecord on ${agent.serviceUrl}: ${describe(err)}`, { cause: err })
    })
  const respondedAt = performance.now()
  const rev = res.data.commit?.rev
  if (!rev) throw new Error(`createRecord returned no commit: ${JSON.stringify(res.data)}`)
  const path = res.data.uri.split('/').slice(-2).join('/')
  return { ms: respondedAt - t0, rev, path, respondedAt }
}

/** `n` writes, one after the other. */
export const sequentialWrites = async (agent: AtpAgent, did: string, n: number): Promise<WriteRun> => {
  const run: WriteRun = { latencies: [], wallMs: 0, commits: [], errors: [] }
  const t0 = performance.now()
  for (let i = 0; i < n; i++) await recordWrite(run, agent, did)
  run.wallMs = performance.now() - t0
  return run
}

/** `perClient` writes from each agent, all agents at once. */
export const concurrentWrites = async (agents: AtpAgent[], did: string, perClient: number): Promise<WriteRun> => {
  const run: WriteRun = { latencies: [], wallMs: 0, commits: [], errors: [] }
  const t0 = performance.now()
  await Promise.all(
    agents.map(async (agent) => {
      for (let i = 0; i < perClient; i++) await recordWrite(run, agent, did)
    }),
  )
  run.wallMs = performance.now() - t0
  return run
}

/** Creates `total` posts with applyWrites, `batch` creates per call; returns per-call ms. */
export const seedRecords = async (
  agent: AtpAgent,
  did: string,
  total: number,
  batch: number,
  onProgress?: (done: number) => void,
): Promise<number[]> => {
  const times: number[] = []
  for (let done = 0; done < total; done += batch) {
    const n = Math.min(batch, total - done)
    const writes = Array.from({ length: n }, () => ({
      $type: 'com.atproto.repo.applyWrites#create' as const,
      collection: 'app.bsky.feed.post',
      value: post(),
    }))
    const t0 = performance.now()
    await agent.com.atproto.repo.applyWrites({ repo: did, writes })
    times.push(performance.now() - t0)
    onProgress?.(done + n)
  }
  return times
}
