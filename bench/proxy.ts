/**
 * Forwarding cost: both PDSes send `app.bsky.feed.getTimeline` to the same
 * loopback AppView stand-in, which answers at once with a fixed ~30 KB
 * timeline. What is timed is the PDS's own work: auth, minting the service
 * token, the round trip, passing the body back, and the read-after-write
 * check. Two variants: the AppView is up to date (`atproto-repo-rev` ahead of
 * the repo: nothing to add) or three posts behind (they are added).
 */
import type { AtpAgent } from '@atproto/api'

export const STUB_APPVIEW_DID = 'did:web:appview.bench.invalid'

/** A rev no TID ever exceeds: "caught up". */
const REV_AHEAD = 'zzzzzzzzzzzzz'

export interface AppViewStub {
  url: string
  /** The rev the answers to `did`'s PDS claim to have indexed (null: caught up). */
  setIndexedRev(did: string, rev: string | null): void
  requests(): number
  stop(): void
}

const timeline = (n: number) => ({
  cursor: 'bench',
  feed: Array.from({ length: n }, (_, i) => ({
    post: {
      uri: `at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.feed.post/3k${String(i).padStart(11, '2')}`,
      cid: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm',
      author: { did: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa', handle: 'someone.example.com', displayName: 'Someone', viewer: {}, labels: [] },
      record: { $type: 'app.bsky.feed.post', text: `post number ${i} `.repeat(8), createdAt: '2026-11-01T00:00:00.000Z' },
      replyCount: 0,
      repostCount: 0,
      likeCount: i,
      indexedAt: '2026-11-01T00:00:00.000Z',
      viewer: {},
      labels: [],
    },
  })),
})

export const startAppViewStub = (): AppViewStub => {
  const body = JSON.stringify(timeline(50))
  const revs = new Map<string, string>()
  let count = 0
  const server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    fetch: (req) => {
      count++
      // The caller is the service token's issuer (not verified: this is a timing stand-in).
      const token = req.headers.get('authorization')?.split('.')[1] ?? ''
      const iss = (() => {
        try {
          return JSON.parse(Buffer.from(token, 'base64url').toString()).iss as string
        } catch {
          return ''
        }
      })()
      return new Response(body, { headers: { 'content-type': 'application/json; charset=utf-8', 'atproto-repo-rev': revs.get(iss) ?? REV_AHEAD } })
    },
  })
  return {
    url: `http://127.0.0.1:${server.port}`,
    setIndexedRev: (did, rev) => {
      if (rev === null) revs.delete(did)
      else revs.set(did, rev)
    },
    requests: () => count,
    stop: () => server.stop(true),
  }
}

/** Latencies of `n` sequential getTimeline calls through the PDS, ms; fails on any non-200. */
export const proxiedTimelines = async (agent: AtpAgent, n: number, expectLocal: boolean): Promise<number[]> => {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    const res = await agent.app.bsky.feed.getTimeline({ limit: 50 })
    if (!res.success || res.data.feed.length < 50) throw new Error(`getTimeline through the PDS: ${res.data.feed.length} items`)
    if (expectLocal && !res.data.feed.some((item) => (item.post.record as { text?: string }).text?.startsWith('not indexed yet'))) {
      throw new Error('getTimeline through the PDS: the local posts were not added')
    }
    out.push(performance.now() - t0)
  }
  return out
}
