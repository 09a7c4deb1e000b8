/**
 * did:plc operations (did:plc method spec v0.1, web.plc.directory/spec):
 * reading an account's current state from the PLC directory (`PLC_URL`),
 * building an update on top of its last operation, signing it with this
 * PDS's PLC rotation key, and submitting it.
 *
 * An operation is `{type: 'plc_operation', rotationKeys, verificationMethods,
 * alsoKnownAs, services, prev, sig}`: `prev` is the CID (dag-cbor, sha-256)
 * of the previous signed operation, `sig` the base64url (unpadded) compact
 * low-S ECDSA signature of the dag-cbor encoding of the op without `sig`.
 * The directory checks the signature against the previous op's rotation keys.
 */
import type { Keypair } from '@atproto/crypto'
import { encode } from '@atproto/lex-cbor'
import { cidForCbor } from '@atproto/lex-data'
import { base64url } from 'jose'
import { XrpcError, InvalidRequestError } from '../errors'

export interface PlcService {
  type: string
  endpoint: string
}

/** The current state of a DID in the directory (what an operation sets). */
export interface PlcData {
  rotationKeys: string[]
  verificationMethods: Record<string, string>
  alsoKnownAs: string[]
  services: Record<string, PlcService>
}

export interface PlcOperation extends PlcData {
  type: 'plc_operation'
  prev: string | null
  sig?: string
}

/** A legacy genesis op (before plc_operation existed). */
interface LegacyCreateOp {
  type: 'create'
  signingKey: string
  recoveryKey: string
  handle: string
  service: string
  prev: null
  sig: string
}

type LoggedOp = PlcOperation | LegacyCreateOp | { type: 'plc_tombstone'; prev: string; sig: string }

const TIMEOUT_MS = 10_000

/** Calls the directory; its errors become ours as the reference maps them (5xx → 502, else 400 with its message). */
const plcFetch = async (plcUrl: string, path: string, init: RequestInit = {}): Promise<Response> => {
  let res: Response
  try {
    res = await fetch(`${plcUrl}${path}`, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS) })
  } catch {
    throw new XrpcError(502, 'The PLC directory could not be reached', 'UpstreamFailure')
  }
  if (res.ok) return res
  const body = (await res.json().catch(() => null)) as { message?: unknown } | null
  const message = typeof body?.message === 'string' ? body.message : 'Unable to perform PLC operation'
  throw res.status >= 500 ? new XrpcError(502, message, 'UpstreamFailure') : new InvalidRequestError(message)
}

/** The DID's current data: keys, handles and services. */
export const getPlcData = async (plcUrl: string, did: string): Promise<PlcData> =>
  (await (await plcFetch(plcUrl, `/${encodeURIComponent(did)}/data`)).json()) as PlcData

/** The last operation in the DID's log. */
const getLastOp = async (plcUrl: string, did: string): Promise<LoggedOp> =>
  (await (await plcFetch(plcUrl, `/${encodeURIComponent(did)}/log/last`)).json()) as LoggedOp

/** Publishes a signed operation. */
export const submitPlcOperation = async (plcUrl: string, did: string, op: PlcOperation): Promise<void> => {
  const res = await plcFetch(plcUrl, `/${encodeURIComponent(did)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(op),
  })
  await res.body?.cancel()
}

/** A legacy create op in today's form, so an update can start from it. */
const asPlcData = (op: PlcOperation | LegacyCreateOp): PlcData =>
  op.type === 'create'
    ? {
        rotationKeys: [op.recoveryKey, op.signingKey],
        verificationMethods: { atproto: op.signingKey },
        alsoKnownAs: [`at://${op.handle}`],
        services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: op.service } },
      }
    : { rotationKeys: op.rotationKeys, verificationMethods: op.verificationMethods, alsoKnownAs: op.alsoKnownAs, services: op.services }

/**
 * Builds and signs the next operation of `did`: the last op's data with the
 * given fields replaced wholesale (as the reference's signPlcOperation does).
 */
export const signPlcUpdate = async (plcUrl: string, did: string, key: Keypair, change: (data: PlcData) => Partial<PlcData>): Promise<PlcOperation> => {
  const last = await getLastOp(plcUrl, did)
  if (last.type === 'plc_tombstone') throw new InvalidRequestError('Did is tombstoned')
  const data = asPlcData(last)
  const unsigned: PlcOperation = { type: 'plc_operation', ...data, ...change(data), prev: (await cidForCbor(encode(last as never))).toString() }
  const sig = await key.sign(encode(unsigned as never))
  return { ...unsigned, sig: base64url.encode(sig) }
}

/** Checks the shape of an operation a client hands us to submit (the directory checks its signature). */
export const isPlcOperation = (value: unknown): value is PlcOperation => {
  const op = value as Partial<PlcOperation> | null
  const strings = (v: unknown): boolean => Array.isArray(v) && v.every((s) => typeof s === 'string')
  const stringMap = (v: unknown): boolean => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((s) => typeof s === 'string')
  const services = (v: unknown): boolean =>
    typeof v === 'object' &&
    v !== null &&
    Object.values(v).every((s) => typeof s === 'object' && s !== null && typeof (s as PlcService).type === 'string' && typeof (s as PlcService).endpoint === 'string')
  const allowed = new Set(['type', 'rotationKeys', 'verificationMethods', 'alsoKnownAs', 'services', 'prev', 'sig'])
  return (
    typeof op === 'object' &&
    op !== null &&
    Object.keys(op).every((k) => allowed.has(k)) &&
    op.type === 'plc_operation' &&
    strings(op.rotationKeys) &&
    stringMap(op.verificationMethods) &&
    strings(op.alsoKnownAs) &&
    services(op.services) &&
    (op.prev === null || typeof op.prev === 'string') &&
    typeof op.sig === 'string'
  )
}
