/**
 * A scripted stand-in for the AppView (Bun.serve on loopback) for the account
 * suite: it answers com.atproto.identity.resolveHandle from a fixed table and
 * everything else with `{ok: true}`, and records every request it receives,
 * so a test can check what the PDS forwarded (and what it never forwarded).
 */
import type { Server } from 'bun'

export interface StubRequest {
  method: string
  /** The NSID from /xrpc/<nsid>, as written by the PDS. */
  nsid: string
  /** Path and query exactly as received. */
  path: string
  query: Record<string, string>
  /** Lower-cased header names. */
  headers: Record<string, string>
}

export interface AppViewStub {
  url: string
  did: string
  requests: StubRequest[]
  clear(): void
  stop(): Promise<void>
}

/**
 * Starts the stub. `handles` maps a (lower-case) handle to the `did` the
 * stub answers for it; other handles get the AppView's 400 InvalidRequest.
 */
export const startAppViewStub = (handles: Record<string, string>): AppViewStub => {
  const requests: StubRequest[] = []
  const server: Server<undefined> = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    fetch: (req) => {
      const url = new URL(req.url)
      const nsid = url.pathname.replace(/^\/xrpc\//, '')
      requests.push({
        method: req.method,
        nsid,
        path: `${url.pathname}${url.search}`,
        query: Object.fromEntries(url.searchParams),
        headers: Object.fromEntries(req.headers),
      })
      if (nsid === 'com.atproto.identity.resolveHandle') {
        const did = handles[url.searchParams.get('handle') ?? '']
        if (did !== undefined) return Response.json({ did })
        return Response.json({ error: 'InvalidRequest', message: 'Unable to resolve handle' }, { status: 400 })
      }
      return Response.json({ ok: true, nsid })
    },
  })
  return {
    url: `http://127.0.0.1:${server.port}`,
    did: 'did:web:appview.stub',
    requests,
    clear: () => {
      requests.length = 0
    },
    stop: () => server.stop(true),
  }
}
