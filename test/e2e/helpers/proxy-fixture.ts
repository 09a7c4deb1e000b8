/**
 * What the proxy suites (proxy-forwarding, proxy-auth) run against and check
 * with: our PDS and the reference PDS, both pointed at loopback echo services
 * (helpers/echo-service.ts) that verify every forwarded token with
 * @atproto/xrpc-server's verifyJwt against the issuer's DID document, plus the
 * request builder and the "forwarded exactly once, token verified" check.
 */
import { afterAll, beforeAll, expect } from 'bun:test'
import { type PdsProcess, startPds, stopPds } from '../harness'
import { request, type XrpcResponse } from '../xrpc-client'
import { type EchoRequest, type EchoService, startEchoService } from './echo-service'
import { onEachPeer, ourPeer, type Peer, type ReferencePds, referencePeer, spawnReference } from './reference-peer'

export const HANDLE = 'alice.test'
export const PASSWORD = 'proxy-password-1'

export interface ProxyServers {
  /** AppView, moderation service, and a PLC directory that knows no DID (our PLC_URL). */
  appView: EchoService
  /** The "second service DID": atproto-proxy target and feed generator. */
  second: EchoService
  /** A did:web whose `#echo` endpoint is a closed port and whose `#bsky_fg` endpoint is `second`. */
  split: EchoService
  /** A did:web with no DID document. */
  noDoc: EchoService
  pds: PdsProcess
  refPds?: ReferencePds
  ours: Peer
  ref?: Peer
  /** Runs the same check on our PDS and on the reference; failures are labelled with the server. */
  onBoth(check: (p: Peer) => Promise<void>): Promise<void>
  /** The requests the echo services received while `call` ran. */
  capture(call: () => Promise<XrpcResponse>): Promise<{ res: XrpcResponse; seen: EchoRequest[] }>
}

/** Per-file setup: the servers start before the file's tests (`onReady` gets them) and stop after. */
export const useProxyServers = (onReady: (servers: ProxyServers) => void): void => {
  const started: Partial<ProxyServers> = {}
  beforeAll(async () => {
    const s = started
    ;[s.appView, s.second, s.noDoc] = await Promise.all([
      startEchoService(),
      startEchoService(),
      startEchoService({ serveDidDoc: false }),
    ])
    const closed = await startEchoService()
    await closed.stop()
    s.split = await startEchoService({ endpoints: { echo: closed.url, bsky_fg: s.second.url } })
    const appView = s.appView
    ;[s.pds, s.refPds] = await Promise.all([
      startPds({
        handle: HANDLE,
        password: PASSWORD,
        vars: {
          BSKY_APPVIEW_URL: appView.url,
          BSKY_APPVIEW_DID: appView.did,
          MOD_SERVICE_URL: appView.url,
          MOD_SERVICE_DID: appView.did,
          PLC_URL: appView.url,
        },
      }),
      spawnReference({
        handle: HANDLE,
        password: PASSWORD,
        env: {
          bskyAppViewUrl: appView.url,
          bskyAppViewDid: appView.did,
          modServiceUrl: appView.url,
          modServiceDid: appView.did,
        },
      }),
    ])
    const ours = await ourPeer(s.pds)
    const ref = s.refPds && referencePeer(s.refPds)
    const echoes = [s.appView, s.second, s.split, s.noDoc]
    // The echo services check the reference account's tokens against its PLC directory.
    if (s.refPds) for (const e of echoes) e.setPlcUrl(s.refPds.plcUrl)
    onReady({
      ...(s as Required<typeof s>),
      ours,
      ref,
      onBoth: (check) => onEachPeer(ref ? [ours, ref] : [ours], check),
      capture: async (call) => {
        for (const e of echoes) e.clear()
        const res = await call()
        return { res, seen: echoes.flatMap((e) => e.requests) }
      },
    })
  }, 150_000)
  afterAll(async () => {
    const s = started
    await Promise.all([stopPds(s.pds), s.refPds?.stop(), s.appView?.stop(), s.second?.stop(), s.split?.stop(), s.noDoc?.stop()])
  })
}

/** A request to `p`, with the owner's token unless another (or null: none) is given. */
export const send = (
  p: Peer,
  nsid: string,
  init: { method?: string; query?: string; headers?: Record<string, string>; body?: BodyInit; token?: string | null } = {},
): Promise<XrpcResponse> => {
  const token = init.token === undefined ? p.token : init.token
  return request(p, `/xrpc/${nsid}${init.query ?? ''}`, {
    method: init.method ?? 'GET',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...init.headers },
    body: init.body,
  })
}

/** One forwarded request reached exactly `target`, with a token that verified. */
export const expectForwarded = (seen: EchoRequest[], target: EchoService, p: Peer, nsid: string): EchoRequest => {
  expect(seen.map((r) => `${r.nsid} ${r.verifyError?.error ?? 'verified'}`)).toEqual([`${nsid} verified`])
  const [got] = seen
  expect(got.headers.host).toBe(`localhost:${target.port}`)
  expect(got.jwtPayload?.iss).toBe(p.did)
  return got
}
