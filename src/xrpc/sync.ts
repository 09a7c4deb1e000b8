/**
 * com.atproto.sync.*: repo export for relays and anyone who wants to verify
 * the signed repo (CAR files) and its blobs, answering as the reference PDS
 * does. Reads never write: they answer on the repo as it exists.
 */
import { parseCid, type Cid } from '@atproto/lex-data'
import { assertRepoAvailable, statusView } from '../account-status'
import type { AccessCredentials } from '../auth/credentials'
import { noAuth, optionalAccessAuth } from '../auth/verifier'
import { getRootAndAccount } from '../db/account-row'
import { listReferencedBlobCids } from '../db/blobs'
import { getRepoCreatedAt, type RootRow } from '../db/repo'
import { InvalidRequestError } from '../errors'
import type { Deps } from '../http/context'
import { com } from '../lexicons'
import { blocksCar, recordProofCar, streamRepoCar } from '../repo/reader'
import type { XrpcRouter } from './router'

const CAR_HEADERS = { 'content-type': 'application/vnd.ipld.car' }

/** Unknown DIDs are RepoNotFound (the reference's assertRepoAvailability). */
const ownRepo = (deps: Deps, did: string): string => {
  if (did !== deps.config.did) throw new InvalidRequestError(`Could not find repo for DID: ${did}`, 'RepoNotFound')
  return did
}

/** Our repo, if the caller may read it: anyone while active, only its owner while not (to export it). */
const availableRepo = async (deps: Deps, did: string, auth: AccessCredentials | null): Promise<RootRow | null> => {
  ownRepo(deps, did)
  const { root, account } = await getRootAndAccount(deps.db)
  if (!account) throw new InvalidRequestError(`Could not find repo for DID: ${did}`, 'RepoNotFound')
  assertRepoAvailable(account, auth?.did ?? null)
  return root
}

/** The current commit of an available repo; a repo with no commit yet is not found (as the reference). */
const currentRoot = async (deps: Deps, did: string, auth: AccessCredentials | null): Promise<RootRow> => {
  const root = await availableRepo(deps, did, auth)
  if (!root) throw new InvalidRequestError(`Could not find root for DID: ${did}`, 'RepoNotFound')
  return root
}

export const registerSyncMethods = (x: XrpcRouter): void => {
  x.query(com.atproto.sync.getLatestCommit.main, optionalAccessAuth, async ({ deps, params, auth }) => {
    const root = await currentRoot(deps, params.did, auth)
    return { cid: root.cid, rev: root.rev }
  })

  x.query(com.atproto.sync.getRepo.main, optionalAccessAuth, async ({ deps, params, auth }) => {
    const root = await currentRoot(deps, params.did, auth)
    return new Response(streamRepoCar(deps.db, root, params.since), { headers: CAR_HEADERS })
  })

  x.query(com.atproto.sync.getRecord.main, optionalAccessAuth, async ({ deps, params, auth }) => {
    const root = await currentRoot(deps, params.did, auth)
    return new Response(await recordProofCar(deps.db, root, params.collection, params.rkey), { headers: CAR_HEADERS })
  })

  x.query(com.atproto.sync.getBlocks.main, optionalAccessAuth, async ({ deps, params, auth }) => {
    await availableRepo(deps, params.did, auth)
    const cids: Cid[] = params.cids.map((s) => {
      try {
        return parseCid(s)
      } catch {
        throw new InvalidRequestError(`Invalid CID: ${s}`)
      }
    })
    const result = await blocksCar(deps.db, cids)
    if ('missing' in result) throw new InvalidRequestError(`Could not find cids: ${result.missing.join(',')}`)
    return new Response(result.car, { headers: CAR_HEADERS })
  })

  x.query(com.atproto.sync.getBlob.main, optionalAccessAuth, async ({ deps, params, req, auth }) => {
    await availableRepo(deps, params.did, auth)
    const served = await deps.blobs.serve(params.cid, req.headers.get('range'))
    if (!served) throw new InvalidRequestError('Blob not found', 'BlobNotFound')
    return served
  })

  x.query(com.atproto.sync.listBlobs.main, optionalAccessAuth, async ({ deps, params, auth }) => {
    await availableRepo(deps, params.did, auth)
    const limit = params.limit ?? 500
    const cids = await listReferencedBlobCids(deps.db, { since: params.since, cursor: params.cursor, limit })
    return { cids, cursor: cids.length === limit ? cids.at(-1) : undefined }
  })

  // Public, whatever the status: relays and migration tools ask it (rev only while active, as the reference).
  x.query(com.atproto.sync.getRepoStatus.main, noAuth, async ({ deps, params }) => {
    const did = ownRepo(deps, params.did)
    const { root, account } = await getRootAndAccount(deps.db)
    if (!account) throw new InvalidRequestError(`Could not find repo for DID: ${did}`, 'RepoNotFound')
    const status = statusView(account)
    return { did, ...status, ...(status.active && root ? { rev: root.rev } : {}) }
  })

  x.query(com.atproto.sync.listRepos.main, noAuth, async ({ deps, params }) => {
    const { root, account } = await getRootAndAccount(deps.db)
    if (!root || !account) return { repos: [] }
    const createdAt = (await getRepoCreatedAt(deps.db)) ?? new Date().toISOString()
    const cursor = `${Date.parse(createdAt)}::${deps.config.did}`
    if (params.cursor !== undefined) {
      // One repo: any well-formed cursor is at or past it.
      const [time, did] = params.cursor.split('::')
      if (!did || Number.isNaN(Number(time))) throw new InvalidRequestError('Malformed cursor')
      return { repos: [] }
    }
    return { cursor, repos: [{ did: deps.config.did, head: root.cid, rev: root.rev, ...statusView(account) }] }
  })
}
