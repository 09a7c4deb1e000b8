/**
 * A loopback HTTP server standing in for a relay: it records every request
 * (path and JSON body) the PDS makes to it, such as requestCrawl, and
 * answers 200 `{}`.
 */
export interface RelayStub {
  /** The base URL to put in RELAY_HOSTS. */
  url: string
  port: number
  /** Requests received so far, oldest first. */
  crawls: { path: string; body: unknown }[]
  stop(): void
}

export const startRelayStub = (): RelayStub => {
  const crawls: RelayStub['crawls'] = []
  const server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(req) {
      crawls.push({ path: new URL(req.url).pathname, body: await req.json().catch(() => null) })
      return Response.json({})
    },
  })
  const port = server.port as number
  return { url: `http://127.0.0.1:${port}`, port, crawls, stop: () => server.stop(true) }
}
