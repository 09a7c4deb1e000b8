/**
 * The reference PDS as a peer of ours in the e2e suites: the official
 * @atproto/pds from test/peers, spawned in a Node 22 child (Bun cannot host
 * it) with one did:plc account, so the same request can go to both servers and
 * the answers be compared. Without test/peers (a trimmed checkout) only our
 * side is checked.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { type PdsProcess, REPO_ROOT } from '../harness'
import { createSession } from '../xrpc-client'

/** One server a check runs on, with its owner's credentials and a full-access token. */
export interface Peer {
  name: 'ours' | 'ref'
  url: string
  did: string
  handle: string
  password: string
  /** The owner's access token (full access). */
  token: string
}

/** What test/peers/reference-pds.mjs's spawnReferencePds hands back. */
export interface ReferencePds {
  url: string
  /** Its in-memory PLC directory, where the account's did:plc is registered. */
  plcUrl: string
  did: string
  handle: string
  password: string
  email: string
  accessJwt: string
  refreshJwt: string
  /** Where it keeps its SQLite databases (account.sqlite holds the email tokens). */
  dataDir: string
  stop(): Promise<void>
}

export interface ReferenceOptions {
  handle: string
  password: string
  /** A PLC directory to use instead of a new in-memory one (a second PDS on the same directory). */
  plcUrl?: string
  /** Extra @atproto/pds ServerEnvironment fields (bskyAppViewUrl, modServiceDid, ...). */
  env?: Record<string, string>
}

const LAUNCHER = join(REPO_ROOT, 'test/peers/reference-pds.mjs')
export const HAVE_REFERENCE = existsSync(LAUNCHER)
/** A first start loads ~1,000 modules; a cold machine needs more than the launcher's 60 s default. */
const START_TIMEOUT_MS = 90_000

/** Starts the reference with one account; undefined without test/peers. */
export const spawnReference = async (opts: ReferenceOptions): Promise<ReferencePds | undefined> => {
  if (!HAVE_REFERENCE) return undefined
  const launcher = (await import(LAUNCHER)) as {
    spawnReferencePds(o: ReferenceOptions & { timeoutMs: number }): Promise<ReferencePds>
  }
  return launcher.spawnReferencePds({ ...opts, timeoutMs: START_TIMEOUT_MS })
}

/** Our PDS as a peer: its owner logs in for a fresh access token. */
export const ourPeer = async (pds: PdsProcess): Promise<Peer> => ({
  name: 'ours',
  url: pds.url,
  did: pds.did,
  handle: pds.handle,
  password: pds.password,
  token: (await createSession(pds, pds.handle, pds.password)).accessJwt,
})

/** The reference as a peer, with the token its account was created with. */
export const referencePeer = (ref: ReferencePds): Peer => ({
  name: 'ref',
  url: ref.url,
  did: ref.did,
  handle: ref.handle,
  password: ref.password,
  token: ref.accessJwt,
})

/** Runs the same check on every peer, even after one fails; failures are labelled with the server. */
export const onEachPeer = async <P extends Peer>(peers: P[], check: (p: P) => Promise<void>): Promise<void> => {
  const failures: string[] = []
  for (const p of peers) {
    try {
      await check(p)
    } catch (err) {
      failures.push(`[${p.name}] ${(err as Error).message}`)
    }
  }
  if (failures.length) throw new Error(failures.join('\n\n'))
}
