/**
 * Turns client writes into prepared writes: pure checks, no I/O.
 *
 * Follows the reference PDS's `repo/prepare.ts`: the `$type` is filled in or
 * must equal the collection; the record key must be valid (and fit the
 * lexicon's key type); records of known collections are validated against
 * the official lexicons; `validate: true` on an unknown collection fails;
 * values must fit the atproto data model (no floats), checked by encoding.
 */
import { TID } from '@atproto/common-web'
import { jsonToLex as jsonToLexicon } from '@atproto/lexicon'
import { encode } from '@atproto/lex-cbor'
import { cidForCbor, type Cid, type LexMap } from '@atproto/lex-data'
import { jsonToLex } from '@atproto/lex-json'
import { isValidNsid, isValidRecordKey } from '@atproto/syntax'
import { isKnownRecordType, lexicons, recordKeyType } from '../lexicon'
import { InvalidRecordError } from './errors'

const MAX_RECORD_BYTES = 1_000_000

export type ValidationStatus = 'valid' | 'unknown' | undefined

interface PreparedBase {
  collection: string
  rkey: string
  uri: string
  /** Expected current CID: undefined = no check, null = must not exist. */
  swapCid?: Cid | null
}

export interface PreparedCreate extends PreparedBase {
  action: 'create'
  record: LexMap
  cid: Cid
  bytes: Uint8Array
  validationStatus: ValidationStatus
}

export interface PreparedUpdate extends PreparedBase {
  action: 'update'
  record: LexMap
  cid: Cid
  bytes: Uint8Array
  validationStatus: ValidationStatus
}

export interface PreparedDelete extends PreparedBase {
  action: 'delete'
  /** deleteRecord: a missing record is a no-op rather than an error (as the reference). */
  ifExists?: boolean
}

export type PreparedWrite = PreparedCreate | PreparedUpdate | PreparedDelete

export interface WriteInput {
  did: string
  collection: string
  rkey?: string
  record: unknown
  validate?: boolean
  swapCid?: Cid | null
}

const assertCollection = (collection: string): void => {
  if (!isValidNsid(collection)) throw new InvalidRecordError(`Invalid collection: ${collection}`)
}

const assertRecordKey = (rkey: string): void => {
  if (!isValidRecordKey(rkey)) throw new InvalidRecordError(`Invalid record key: ${rkey}`)
}

/** Checks a record key against the lexicon's declared key type. */
const assertKeyFitsLexicon = (collection: string, rkey: string): void => {
  const keyType = recordKeyType(collection)
  if (!keyType || keyType === 'any') return
  if (keyType === 'tid' && !TID.is(rkey)) {
    throw new InvalidRecordError(`Invalid record key for ${collection}: must be a valid TID`)
  }
  if (keyType === 'nsid' && !isValidNsid(rkey)) {
    throw new InvalidRecordError(`Invalid record key for ${collection}: must be a valid NSID`)
  }
  if (keyType.startsWith('literal:') && rkey !== keyType.slice('literal:'.length)) {
    throw new InvalidRecordError(`Invalid record key for ${collection}: must be "${keyType.slice('literal:'.length)}"`)
  }
}

const validateRecord = (collection: string, rkey: string, json: Record<string, unknown>, validate?: boolean): ValidationStatus => {
  if (validate === false) return undefined
  if (!isKnownRecordType(collection)) {
    if (validate === true) throw new InvalidRecordError(`Unknown lexicon type: ${collection}`)
    return 'unknown'
  }
  assertKeyFitsLexicon(collection, rkey)
  try {
    lexicons.assertValidRecord(collection, jsonToLexicon(json))
  } catch (err) {
    throw new InvalidRecordError(`Invalid ${collection} record: ${(err as Error).message}`)
  }
  return 'valid'
}

const prepareRecord = async (input: WriteInput, rkey: string) => {
  const { collection } = input
  if (typeof input.record !== 'object' || input.record === null || Array.isArray(input.record)) {
    throw new InvalidRecordError('Record must be an object')
  }
  const json = input.record as Record<string, unknown>
  if (json.$type !== undefined && json.$type !== collection) {
    throw new InvalidRecordError(`Invalid $type: expected ${collection}, got ${String(json.$type)}`)
  }
  const typed = json.$type === undefined ? { ...json, $type: collection } : json
  const validationStatus = validateRecord(collection, rkey, typed, input.validate)
  let record: LexMap
  let bytes: Uint8Array
  try {
    record = jsonToLex(typed as never) as LexMap
    bytes = encode(record)
  } catch (err) {
    throw new InvalidRecordError(`Invalid record: ${(err as Error).message}`)
  }
  // One block is one D1 row; the reference PDS caps record bodies at 1 MB too.
  if (bytes.byteLength > MAX_RECORD_BYTES) throw new InvalidRecordError(`Record too large: ${bytes.byteLength} bytes (max ${MAX_RECORD_BYTES})`)
  return { record, bytes, cid: await cidForCbor(bytes), validationStatus }
}

const atUri = (did: string, collection: string, rkey: string): string => `at://${did}/${collection}/${rkey}`

export const prepareCreate = async (input: WriteInput): Promise<PreparedCreate> => {
  assertCollection(input.collection)
  if (input.rkey !== undefined && input.rkey !== '') assertRecordKey(input.rkey)
  const rkey = input.rkey || TID.nextStr()
  return {
    action: 'create',
    collection: input.collection,
    rkey,
    uri: atUri(input.did, input.collection, rkey),
    swapCid: input.swapCid,
    ...(await prepareRecord(input, rkey)),
  }
}

export const prepareUpdate = async (input: WriteInput & { rkey: string }): Promise<PreparedUpdate> => {
  assertCollection(input.collection)
  assertRecordKey(input.rkey)
  return {
    action: 'update',
    collection: input.collection,
    rkey: input.rkey,
    uri: atUri(input.did, input.collection, input.rkey),
    swapCid: input.swapCid,
    ...(await prepareRecord(input, input.rkey)),
  }
}

export const prepareDelete = (input: { did: string; collection: string; rkey: string; swapCid?: Cid | null }): PreparedDelete => {
  assertCollection(input.collection)
  assertRecordKey(input.rkey)
  return {
    action: 'delete',
    collection: input.collection,
    rkey: input.rkey,
    uri: atUri(input.did, input.collection, input.rkey),
    swapCid: input.swapCid,
  }
}

/** Subjects a follow/block/like/repost points at: a second one replaces the first, as in the reference. */
export const backlinksOf = (write: PreparedWrite): { path: string; linkTo: string }[] => {
  if (write.action === 'delete') return []
  const record = write.record as Record<string, unknown>
  if (write.collection === 'app.bsky.graph.follow' || write.collection === 'app.bsky.graph.block') {
    const subject = record.subject
    return typeof subject === 'string' && subject.startsWith('did:') ? [{ path: 'subject', linkTo: subject }] : []
  }
  if (write.collection === 'app.bsky.feed.like' || write.collection === 'app.bsky.feed.repost') {
    const uri = (record.subject as Record<string, unknown> | undefined)?.uri
    return typeof uri === 'string' && uri.startsWith('at://') ? [{ path: 'subject.uri', linkTo: uri }] : []
  }
  return []
}
