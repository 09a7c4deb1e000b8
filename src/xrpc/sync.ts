/**
 * com.atproto.sync.*: repo export for relays and anyone who wants to verify
 * the signed repo (CAR files) and its blobs, answering as the reference PDS
 * does. Reads never write: they answer on the repo as it exists.
 */
import { parseCid, type Cid } from '@atproto/lex-data'
import { noAuth } from '../auth/verifier'
import { listReferencedBlobCids } from '../db/blobs'
import { getRepoCreatedAt, getRoot, type RootRow } from '../db/repo'
import { InvalidRequestError } from '../errors'
import type { Deps } from '../http/context'
import { com } from '../lexicons'
import { blocksCar, recordProofCar, streamRepoCar } from '../repo/reader'
import type { XrpcRouter } from './router'

const CAR_HEADERS = { 'content-type': 'application/vnd.ipld.car' }

/** Like the reference's assertRepoAvailability: unknown DIDs are RepoNotFound. */
const ownRepo = (deps: Deps, did: string): string => {
  if (did !== deps.config.did) throw new InvalidRequestError(`Could not find repo for DID: ${did}`, 'RepoNotFound')
  return did
}

/** The current commit of our repo; a repo with no commit yet is not found (as the reference). */
const currentRoot = async (deps: Deps, did: string): Promise<RootRow> => {
  ownRepo(deps, did)
  const root = await getRoot(deps.db)
  if (!root) throw new InvalidRequestError(`Could not find root for DID: ${did}`, 'RepoNotFound')
  return root
}

export const registerSyncMethods = (x: XrpcRouter): void => {
  x.query(com.atproto.sync.getLatestCommit.main, noAuth, async ({ deps, params }) => {
    const root = await currentRoot(deps, params.did)
    return { cid: root.cid, rev: root.rev }
  })

  x.query(com.atproto.sync.getRepo.main, noAuth, async ({ deps, params }) => {
    const root = await currentRoot(deps, params.did)
    return new Response(streamRepoCar(deps.db, root, params.since), { headers: CAR_HEADERS })
  })

  x.query(com.atproto.sync.getRecord.main, noAuth, async ({ deps, params }) => {
    const root = await currentRoot(deps, params.did)
    return new Response(await recordProofCar(deps.db, root, params.collection, params.rkey), { headers: CAR_HEADERS })
  })

  x.query(com.atproto.sync.getBlocks.main, noAuth, async ({ deps, params }) => {
    ownRepo(deps, params.did)
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

  x.query(com.atproto.sync.getBlob.main, noAuth, async ({ deps, params, req }) => {
    ownRepo(deps, params.did)
    const served = await deps.blobs.serve(params.cid, req.headers.get('range'))
    if (!served) throw new InvalidRequestError('Blob not found', 'BlobNotFound')
    return served
  })

  x.query(com.atproto.sync.listBlobs.main, noAuth, async ({ deps, params }) => {
    ownRepo(deps, params.did)
    const limit = params.limit ?? 500
    const cids = await listReferencedBlobCids(deps.db, { since: params.since, cursor: params.cursor, limit })
    return { cids, cursor: cids.length === limit ? cids.at(-1) : undefined }
  })

  x.query(com.atproto.sync.getRepoStatus.main, noAuth, async ({ deps, params }) => {
    const did = ownRepo(deps, params.did)
    const root = await getRoot(deps.db)
    return { did, active: true, ...(root ? { rev: root.rev } : {}) }
  })

  x.query(com.atproto.sync.listRepos.main, noAuth, async ({ deps, params }) => {
    const root = await getRoot(deps.db)
    if (!root) return { repos: [] }
    const createdAt = (await getRepoCreatedAt(deps.db)) ?? new Date().toISOString()
    const cursor = `${Date.parse(createdAt)}::${deps.config.did}`
    if (params.cursor !== undefined) {
      // One repo: any well-formed cursor is at or past it.
      const [time, did] = params.cursor.split('::')
      if (!did || Number.isNaN(Number(time))) throw new InvalidRequestError('Malformed cursor')
      return { repos: [] }
    }
    return { cursor, repos: [{ did: deps.config.did, head: root.cid, rev: root.rev, active: true }] }
  })
}
