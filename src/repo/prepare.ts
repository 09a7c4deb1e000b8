/**
 * Turns client writes into prepared writes: pure checks, no I/O.
 *
 * Follows the reference PDS's `repo/prepare.ts`: the `$type` is filled in or
 * must equal the collection; the record key must be valid (and fit the
 * lexicon's key type); records of known collections are validated against
 * the official lexicons; `validate: true` on an unknown collection fails;
 * values must fit the atproto data model (no floats), checked by encoding.
 * Pure except for compiling a lexicon validator on first use.
 */
import { TID } from '@atproto/common-web'
import { encode } from '@atproto/lex-cbor'
import { cidForCbor, enumBlobRefs, isLegacyBlobRef, type Cid, type LexMap, type TypedBlobRef } from '@atproto/lex-data'
import { isValidNsid, isValidRecordKey } from '@atproto/syntax'
import { recordSchema } from '../lexicon'
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
  /** Blobs the record references (checked against the blob index at commit). */
  blobs: TypedBlobRef[]
}

export interface PreparedUpdate extends PreparedBase {
  action: 'update'
  record: LexMap
  cid: Cid
  bytes: Uint8Array
  validationStatus: ValidationStatus
  blobs: TypedBlobRef[]
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
  /** The record as lex data (the XRPC layer converted the JSON). */
  record: unknown
  validate?: boolean
  /** Where the record sits in the request, for error messages (default ["record"]). */
  validationPath?: (string | number)[]
  swapCid?: Cid | null
}

const assertCollection = (collection: string): void => {
  if (!isValidNsid(collection)) throw new InvalidRecordError(`Invalid collection: ${collection}`)
}

const assertRecordKey = (rkey: string): void => {
  if (!isValidRecordKey(rkey)) throw new InvalidRecordError(`Invalid record key: ${rkey}`)
}

/**
 * Validates a record of a known collection with the official lexicon (key
 * type included), with the reference PDS's messages. Unknown collections are
 * "unknown" unless the client asked for validation.
 */
const validateRecord = async (
  collection: string,
  rkey: string,
  record: LexMap,
  opts: { validate?: boolean; validationPath?: (string | number)[] },
): Promise<ValidationStatus> => {
  if (opts.validate === false) return undefined
  const schema = recordSchema(collection)
  if (!schema) {
    if (opts.validate === true) throw new InvalidRecordError(`Unknown lexicon type: ${collection}`)
    return 'unknown'
  }
  const key = schema.keySchema.safeValidate(rkey)
  if (!key.success) throw new InvalidRecordError(`Invalid record key for ${collection}: ${key.reason.message}`)
  const result = schema.safeValidate(record, { path: opts.validationPath ?? ['record'] })
  if (!result.success) throw new InvalidRecordError(`Invalid ${collection} record: ${result.reason.message}`)
  return 'valid'
}

const prepareRecord = async (input: WriteInput, rkey: string) => {
  const { collection } = input
  // Shallow check only: the data model itself (floats...) is enforced by encoding below.
  if (typeof input.record !== 'object' || input.record === null || Array.isArray(input.record) || input.record instanceof Uint8Array) {
    throw new InvalidRecordError('Record must be an object')
  }
  const given = input.record as LexMap
  if (given.$type !== undefined && given.$type !== collection) {
    throw new InvalidRecordError(`Invalid $type: expected ${collection}, got ${String(given.$type)}`)
  }
  const record: LexMap = given.$type === undefined ? { ...given, $type: collection } : given
  const validationStatus = await validateRecord(collection, rkey, record, input)
  let bytes: Uint8Array
  try {
    // Encoding enforces the data model (no floats, ...) for unvalidated collections too.
    bytes = encode(record)
  } catch (err) {
    throw new InvalidRecordError(`Invalid record: ${(err as Error).message}`)
  }
  // One block is one D1 row; the reference PDS caps record bodies at 1 MB too.
  if (bytes.byteLength > MAX_RECORD_BYTES) throw new InvalidRecordError(`Record too large: ${bytes.byteLength} bytes (max ${MAX_RECORD_BYTES})`)
  return { record, bytes, cid: await cidForCbor(bytes), validationStatus, blobs: blobRefsOf(record) }
}

/** Every blob the record references; legacy `{cid, mimeType}` refs are refused, as by the reference. */
const blobRefsOf = (record: LexMap): TypedBlobRef[] =>
  Array.from(enumBlobRefs(record, { strict: false, allowLegacy: true }), (ref) => {
    if (isLegacyBlobRef(ref)) throw new InvalidRecordError(`Legacy blobs are not allowed (${ref.cid})`)
    return ref as TypedBlobRef
  })

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
export const backlinksOf = (write: PreparedWrite): { path: string; linkTo: string }[] =>
  write.action === 'delete' ? [] : backlinksOfRecord(write.collection, write.record as Record<string, unknown>)

/** The backlinks of a record of `collection` (also used when indexing an imported repo). */
export const backlinksOfRecord = (collection: string, record: Record<string, unknown>): { path: string; linkTo: string }[] => {
  if (collection === 'app.bsky.graph.follow' || collection === 'app.bsky.graph.block') {
    const subject = record.subject
    return typeof subject === 'string' && subject.startsWith('did:') ? [{ path: 'subject', linkTo: subject }] : []
  }
  if (collection === 'app.bsky.feed.like' || collection === 'app.bsky.feed.repost') {
    const uri = (record.subject as Record<string, unknown> | undefined)?.uri
    return typeof uri === 'string' && uri.startsWith('at://') ? [{ path: 'subject.uri', linkTo: uri }] : []
  }
  return []
}
