/**
 * com.atproto.sync.*: repo export for relays and anyone who wants to verify
 * the signed repo (CAR files), answering as the reference PDS does.
 */
import { parseCid, type Cid } from '@atproto/lex-data'
import { ensureRepo } from '../repo/commit'
import { blocksCar, recordProofCar, streamRepoCar } from '../repo/reader'
import { getRepoCreatedAt } from '../db/repo'
import { getReferencedBlobRow, listReferencedBlobCids } from '../db/blobs'
import { blobResponse, parseRange, unsatisfiableRange } from '../blobs/serve'
import type { Deps } from './context'
import type { XrpcRouter } from './router'
import type { Hono } from 'hono'
import { firehoseHub } from '../firehose/hub'
import type { AppEnv } from './context'
import { InvalidRequestError, XrpcError } from './errors'

const CAR_HEADERS = { 'content-type': 'application/vnd.ipld.car' }

/** Like the reference's assertRepoAvailability: unknown DIDs are RepoNotFound. */
const ownRepo = (deps: Deps, did: string): string => {
  if (did !== deps.config.did) throw new InvalidRequestError(`Could not find repo for DID: ${did}`, 'RepoNotFound')
  return did
}

/**
 * com.atproto.sync.subscribeRepos: the WebSocket is handed to the FirehoseHub
 * Durable Object, which holds it and replays/delivers from the event log.
 */
export const mountSubscribeRepos = (app: Hono<AppEnv>): void => {
  app.get('/xrpc/com.atproto.sync.subscribeRepos', async (c) => {
    if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') {
      throw new XrpcError(426, 'This method is a WebSocket subscription: connect with Upgrade: websocket', 'UpgradeRequired')
    }
    return firehoseHub(c.env).fetch(c.req.raw)
  })
}

export const registerSyncMethods = (x: XrpcRouter): void => {
  x.query('com.atproto.sync.getLatestCommit', 'none', async ({ deps, params }) => {
    ownRepo(deps, params.did)
    const root = await ensureRepo(deps.repo)
    return { cid: root.cid, rev: root.rev }
  })

  x.query('com.atproto.sync.getRepo', 'none', async ({ deps, params }) => {
    ownRepo(deps, params.did)
    const root = await ensureRepo(deps.repo)
    return new Response(streamRepoCar(deps.db, root, params.since), { headers: CAR_HEADERS })
  })

  x.query('com.atproto.sync.getRecord', 'none', async ({ deps, params }) => {
    ownRepo(deps, params.did)
    const root = await ensureRepo(deps.repo)
    return new Response(await recordProofCar(deps.db, root, params.collection, params.rkey), { headers: CAR_HEADERS })
  })

  x.query('com.atproto.sync.getBlocks', 'none', async ({ deps, params }) => {
    ownRepo(deps, params.did)
    const cids: Cid[] = (params.cids as string[]).map((s) => {
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

  x.query('com.atproto.sync.getBlob', 'none', async ({ deps, params, req }) => {
    ownRepo(deps, params.did)
    const row = await getReferencedBlobRow(deps.db, params.cid)
    if (!row) throw new InvalidRequestError('Blob not found', 'BlobNotFound')
    const range = parseRange(req.headers.get('range'), row.size)
    if (range === 'unsatisfiable') return unsatisfiableRange(row.size)
    const object = await deps.env.BLOBS.get(row.r2Key, range ? { range } : {})
    if (!object) throw new InvalidRequestError('Blob not found', 'BlobNotFound')
    return blobResponse(row, object, range)
  })

  x.query('com.atproto.sync.listBlobs', 'none', async ({ deps, params }) => {
    ownRepo(deps, params.did)
    const limit = params.limit ?? 500
    const cids = await listReferencedBlobCids(deps.db, { since: params.since, cursor: params.cursor, limit })
    return { cids, cursor: cids.length === limit ? cids.at(-1) : undefined }
  })

  x.query('com.atproto.sync.getRepoStatus', 'none', async ({ deps, params }) => {
    const did = ownRepo(deps, params.did)
    const root = await ensureRepo(deps.repo)
    return { did, active: true, rev: root.rev }
  })

  x.query('com.atproto.sync.listRepos', 'none', async ({ deps, params }) => {
    const root = await ensureRepo(deps.repo)
    const createdAt = (await getRepoCreatedAt(deps.db)) ?? new Date().toISOString()
    const cursor = `${Date.parse(createdAt)}::${deps.config.did}`
    if (params.cursor !== undefined) {
      // One repo: any well-formed cursor is at or past it.
      const [time, did] = String(params.cursor).split('::')
      if (!did || Number.isNaN(Number(time))) throw new InvalidRequestError('Malformed cursor')
      return { repos: [] }
    }
    return { cursor, repos: [{ did: deps.config.did, head: root.cid, rev: root.rev, active: true }] }
  })
}
