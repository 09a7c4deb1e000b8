/**
 * What the account suites (account-app-passwords, account-settings) run
 * against: two PDSes of ours, `pds` (AppView unreachable, owner email set and
 * confirmed) and `pdsB` (AppView = a stub that records what reaches it, no
 * email), and the reference PDS (test/peers) with its AppView configured at
 * the same unreachable loopback port, which is all it needs to serve
 * preferences itself. Plus the comparisons and app-password sessions the
 * suites share.
 */
import { afterAll, beforeAll } from 'bun:test'
import { type PdsProcess, startPds, stopPds } from '../harness'
import { createSession, expectStatus, expectXrpcError, type Session, type XrpcResponse, xpost } from '../xrpc-client'
import { type AppViewStub, startAppViewStub } from './account-appview-stub'
import { onEachPeer, ourPeer, type Peer, type ReferencePds, referencePeer, spawnReference } from './reference-peer'

export const HANDLE = 'alice.test'
export const PASSWORD = 'account-password-1'
export const OWNER_EMAIL = 'owner@example.com'
/** Nothing listens on port 1: every forwarded call fails to connect. */
export const UNREACHABLE_APPVIEW = { url: 'http://127.0.0.1:1', did: 'did:web:appview.invalid' }
/** A handle outside our domain that only the stub AppView (pdsB's) can resolve. */
export const FRIEND = { handle: 'friend.example.com', did: 'did:plc:ewvi7nxzyoun6zhxrhs64oiz' }

export interface AccountServers {
  pds: PdsProcess
  pdsB: PdsProcess
  stub: AppViewStub
  refPds?: ReferencePds
  ours: Peer
  oursB: Peer
  ref?: Peer
  /** `ours`, then the reference when it runs. */
  peers(): Peer[]
  /** Runs the same check on our PDS and on the reference; failures are labelled with the server. */
  onBoth(check: (p: Peer) => Promise<void>): Promise<void>
  /** `call` gives exactly this error on our PDS, and the reference answers the same. */
  expectSameError(call: (p: Peer) => Promise<XrpcResponse>, status: number, error: string, message: string): Promise<void>
}

/** Per-file setup: the servers start before the file's tests (`onReady` gets them) and stop after. */
export const useAccountServers = (onReady: (servers: AccountServers) => void): void => {
  const started: Partial<AccountServers> = {}
  beforeAll(async () => {
    const s = started
    s.stub = startAppViewStub({ [FRIEND.handle]: FRIEND.did, 'notadid.example.com': 'not-a-did' })
    ;[s.pds, s.pdsB, s.refPds] = await Promise.all([
      startPds({
        handle: HANDLE,
        password: PASSWORD,
        vars: {
          BSKY_APPVIEW_URL: UNREACHABLE_APPVIEW.url,
          BSKY_APPVIEW_DID: UNREACHABLE_APPVIEW.did,
          PDS_EMAIL: OWNER_EMAIL,
          PDS_EMAIL_CONFIRMED: 'true',
        },
      }),
      startPds({
        handle: HANDLE,
        password: PASSWORD,
        vars: { BSKY_APPVIEW_URL: s.stub.url, BSKY_APPVIEW_DID: s.stub.did, PDS_EMAIL_CONFIRMED: 'false' },
      }),
      spawnReference({
        handle: HANDLE,
        password: PASSWORD,
        // Only the config matters: with an AppView the reference registers its own preference handlers.
        env: { bskyAppViewUrl: UNREACHABLE_APPVIEW.url, bskyAppViewDid: UNREACHABLE_APPVIEW.did },
      }),
    ])
    const [ours, oursB] = await Promise.all([ourPeer(s.pds), ourPeer(s.pdsB)])
    const ref = s.refPds && referencePeer(s.refPds)
    const peers = (): Peer[] => (ref ? [ours, ref] : [ours])
    const onBoth = (check: (p: Peer) => Promise<void>): Promise<void> => onEachPeer(peers(), check)
    onReady({
      ...(s as Required<typeof s>),
      ours,
      oursB,
      ref,
      peers,
      onBoth,
      expectSameError: (call, status, error, message) =>
        onBoth(async (p) => expectXrpcError(await call(p), status, error, message)),
    })
  }, 180_000)
  afterAll(async () => {
    const s = started
    await Promise.all([stopPds(s.pds), stopPds(s.pdsB), s.refPds?.stop(), s.stub?.stop()])
  })
}

/** An app password made by the owner, and a session logged in with it. */
export const appPasswordSession = async (
  p: Peer,
  name: string,
  privileged = false,
): Promise<{ password: string; session: Session }> => {
  const res = expectStatus(await xpost(p, 'com.atproto.server.createAppPassword', { name, privileged }, p.token), 200)
  return { password: res.body.password, session: await createSession(p, p.handle, res.body.password) }
}

let counter = 0
/** Unique per run and per call, so tests never trip over each other's app passwords. */
export const uniqueName = (what: string): string => `${what}-${Date.now().toString(36)}-${counter++}`
