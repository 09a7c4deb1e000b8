/**
 * com.atproto.repo.*: record writes (all through `commitWrites`, the one
 * write path), record reads and blob uploads, with the reference PDS's errors.
 */
import { parseCid, type Cid } from '@atproto/lex-data'
import { assertRepoAvailable } from '../account-status'
import { assertMayUploadBlob, assertMayWriteRecords, type AccessCredentials, type RecordAction } from '../auth/credentials'
import { accessAuth, accessOrServiceAuth, noAuth } from '../auth/verifier'
import { listMissingBlobRefs } from '../db/blobs'
import { listCollections } from '../db/records'
import { AuthRequiredError, ForbiddenError, InvalidRequestError } from '../errors'
import type { Deps } from '../http/context'
import { buildDidDocument, resolveOwnAccount } from '../identity/did-doc'
import { resolveDid } from '../identity/resolver'
import { com } from '../lexicons'
import { commitWrites, type CommitResult } from '../repo/commit'
import { prepareCreate, prepareDelete, prepareUpdate, type PreparedWrite } from '../repo/prepare'
import { listRecords, readRecord } from '../repo/reader'
import type { XrpcRouter } from './router'

/**
 * The DID of the repo a call names, if it is ours: the DID itself, or the
 * account's current handle (read only when a handle is given).
 */
const ownRepoDid = async (deps: Deps, repo: string): Promise<string | null> =>
  repo === deps.config.did ? repo : resolveOwnAccount(deps.config, (await deps.account()).handle, repo)

const APPLY_WRITE_ACTIONS = {
  'com.atproto.repo.applyWrites#create': 'create',
  'com.atproto.repo.applyWrites#update': 'update',
  'com.atproto.repo.applyWrites#delete': 'delete',
} as const

type IntendedWrite = { collection: string; action: RecordAction | 'put' }

/**
 * The repo a write targets must be ours and the caller's (reference:
 * findAccount + DID check), and the credential must allow each write, checked
 * before any record is looked at (as the reference authorizes OAuth scopes).
 * A put may create or replace, so it needs both.
 */
const writableRepo = async (deps: Deps, auth: AccessCredentials, repo: string, writes: IntendedWrite[]): Promise<string> => {
  const did = await ownRepoDid(deps, repo)
  if (!did) throw new ForbiddenError('Account not found', 'AccountNotFound')
  if (did !== auth.did) throw new AuthRequiredError()
  assertMayWriteRecords(
    auth,
    writes.flatMap(({ collection, action }): { collection: string; action: RecordAction }[] =>
      action === 'put'
        ? [
            { collection, action: 'create' },
            { collection, action: 'update' },
          ]
        : [{ collection, action }],
    ),
  )
  return did
}

/** The repo a record read targets: ours and active (the reference reads inactive accounts' records nowhere but sync). */
const readableRepo = async (deps: Deps, repo: string): Promise<string | null> => {
  const did = await ownRepoDid(deps, repo)
  return did && (await deps.account()).status === 'active' ? did : null
}

const optionalCid = (value: string | undefined, field: string): Cid | undefined => {
  if (value === undefined) return undefined
  try {
    return parseCid(value)
  } catch {
    throw new InvalidRequestError(`Invalid CID in ${field}: ${value}`)
  }
}

/** The commit, written as the reference answers with it. */
const commitView = (commit: CommitResult | null) => (commit ? { cid: commit.cid.toString(), rev: commit.rev } : undefined)

/** Record writes check a password session in their own D1 round trip (src/auth/live-session.ts). */
const IN_COMMIT = { sessionCheckedInCommit: true }

export const registerRepoMethods = (x: XrpcRouter): void => {
  x.procedure(
    com.atproto.repo.uploadBlob.main,
    accessOrServiceAuth,
    async ({ deps, auth, req }) => {
      if (!req.body) throw new InvalidRequestError('A request body is expected but none was provided')
      // As the reference (xrpc-server): the encoding must be given and be a MIME type; `*/*` (what goat
      // sends) or a wildcard says "find out", and the bytes are sniffed.
      const contentType = req.headers.get('content-type')?.split(';')[0].trim() ?? ''
      if (!/^[\w.+*-]+\/[\w.+*-]+$/.test(contentType)) {
        throw new InvalidRequestError('Request encoding (Content-Type) required but not provided')
      }
      assertMayUploadBlob(auth, contentType)
      const length = req.headers.get('content-length')
      const blob = await deps.blobs.upload(req.body, {
        contentLength: length === null ? null : Number(length),
        contentType: req.headers.get('content-type'),
        limit: deps.config.blobUploadLimit,
      })
      return { blob }
    },
    { rawInput: true },
  )

  x.query(com.atproto.repo.listMissingBlobs.main, accessAuth, async ({ deps, params }) => {
    const limit = params.limit ?? 500
    const blobs = await listMissingBlobRefs(deps.db, { cursor: params.cursor, limit })
    return { blobs, cursor: blobs.length === limit ? blobs.at(-1)?.cid : undefined }
  })

  x.procedure(com.atproto.repo.createRecord.main, accessAuth, async ({ deps, auth, input }) => {
    const did = await writableRepo(deps, auth, input.repo, [{ collection: input.collection, action: 'create' }])
    const write = await prepareCreate({ did, collection: input.collection, rkey: input.rkey, record: input.record, validate: input.validate })
    const commit = await commitWrites(deps.repo, [write], {
      swapCommit: optionalCid(input.swapCommit, 'swapCommit'),
      replaceBacklinks: input.validate !== false,
      liveSession: auth.sessionId,
    })
    return { uri: write.uri, cid: write.cid.toString(), commit: commitView(commit), validationStatus: write.validationStatus }
  }, IN_COMMIT)

  x.procedure(com.atproto.repo.putRecord.main, accessAuth, async ({ deps, auth, input }) => {
    const did = await writableRepo(deps, auth, input.repo, [{ collection: input.collection, action: 'put' }])
    // swapRecord: null means "must not exist yet"; absent means "no check".
    const swapCid = input.swapRecord === null ? null : optionalCid(input.swapRecord, 'swapRecord')
    const prepared = await prepareUpdate({ did, collection: input.collection, rkey: input.rkey, record: input.record, validate: input.validate, swapCid })
    const commit = await commitWrites(deps.repo, [{ ...prepared, action: 'put' }], {
      swapCommit: optionalCid(input.swapCommit, 'swapCommit'),
      liveSession: auth.sessionId,
    })
    return { uri: prepared.uri, cid: prepared.cid.toString(), commit: commitView(commit), validationStatus: prepared.validationStatus }
  }, IN_COMMIT)

  x.procedure(com.atproto.repo.deleteRecord.main, accessAuth, async ({ deps, auth, input }) => {
    const did = await writableRepo(deps, auth, input.repo, [{ collection: input.collection, action: 'delete' }])
    const write = prepareDelete({ did, collection: input.collection, rkey: input.rkey, swapCid: optionalCid(input.swapRecord, 'swapRecord') })
    const commit = await commitWrites(deps.repo, [{ ...write, ifExists: true }], {
      swapCommit: optionalCid(input.swapCommit, 'swapCommit'),
      liveSession: auth.sessionId,
    })
    return { commit: commitView(commit) }
  }, IN_COMMIT)

  x.procedure(com.atproto.repo.applyWrites.main, accessAuth, async ({ deps, auth, input }) => {
    const did = await writableRepo(
      deps,
      auth,
      input.repo,
      input.writes.map((w) => ({ collection: w.collection, action: APPLY_WRITE_ACTIONS[w.$type as keyof typeof APPLY_WRITE_ACTIONS] ?? 'create' })),
    )
    if (input.writes.length > 200) throw new InvalidRequestError('Too many writes. Max: 200')
    const prepared: PreparedWrite[] = []
    for (const [i, w] of input.writes.entries()) {
      if (w.$type === 'com.atproto.repo.applyWrites#delete') {
        prepared.push(prepareDelete({ did, collection: w.collection, rkey: w.rkey }))
        continue
      }
      const base = { did, collection: w.collection, record: w.value, validate: input.validate, validationPath: ['writes', i, 'record'] }
      if (w.$type === 'com.atproto.repo.applyWrites#create') prepared.push(await prepareCreate({ ...base, rkey: w.rkey }))
      else if (w.$type === 'com.atproto.repo.applyWrites#update') prepared.push(await prepareUpdate({ ...base, rkey: w.rkey }))
      else throw new InvalidRequestError(`Action not supported: ${(w as { $type?: string }).$type}`)
    }
    const commit = await commitWrites(deps.repo, prepared, { swapCommit: optionalCid(input.swapCommit, 'swapCommit'), liveSession: auth.sessionId })
    return {
      commit: commitView(commit),
      results: prepared.map((w) =>
        w.action === 'delete'
          ? { $type: 'com.atproto.repo.applyWrites#deleteResult' }
          : {
              $type: `com.atproto.repo.applyWrites#${w.action}Result`,
              uri: w.uri,
              cid: w.cid.toString(),
              validationStatus: w.validationStatus,
            },
      ),
    }
  }, IN_COMMIT)

  x.query(com.atproto.repo.getRecord.main, noAuth, async ({ deps, params }) => {
    const did = await readableRepo(deps, params.repo)
    if (!did) throw new InvalidRequestError('Could not locate record')
    const uri = `at://${did}/${params.collection}/${params.rkey}`
    const record = await readRecord(deps.db, uri, params.cid)
    if (!record) throw new InvalidRequestError(`Could not locate record: ${uri}`, 'RecordNotFound')
    return record
  })

  x.query(com.atproto.repo.listRecords.main, noAuth, async ({ deps, params }) => {
    if (!(await readableRepo(deps, params.repo))) throw new InvalidRequestError(`Could not find repo: ${params.repo}`)
    return listRecords(deps.db, {
      collection: params.collection,
      limit: params.limit ?? 50,
      reverse: params.reverse ?? false,
      cursor: params.cursor,
    })
  })

  x.query(com.atproto.repo.describeRepo.main, noAuth, async ({ deps, params }) => {
    const did = await ownRepoDid(deps, params.repo)
    if (!did) throw new InvalidRequestError(`Could not find repo for DID: ${params.repo}`, 'RepoNotFound')
    // As the reference: no owner exception here, an inactive repo is described to nobody.
    const account = await deps.account()
    assertRepoAvailable(account, null)
    // A did:plc document lives in the directory: show what the world sees (ours if it cannot be reached).
    const [didDoc, collections] = await Promise.all([
      resolveDid(deps.config, deps.cache, did, { ownHandle: account.handle }).catch(() => buildDidDocument(deps.config, account.handle)),
      listCollections(deps.db),
    ])
    const handleIsCorrect = Array.isArray(didDoc.alsoKnownAs) && didDoc.alsoKnownAs.includes(`at://${account.handle}`)
    return { handle: account.handle, did, didDoc, collections, handleIsCorrect }
  })
}
