/**
 * Errors the repo domain throws. They carry no HTTP knowledge; the XRPC layer
 * maps them (src/http/errors.ts) to the names the reference PDS uses.
 */
import type { Cid } from '@atproto/lex-data'

/** A record (or its key, collection or $type) the repo refuses to store. */
export class InvalidRecordError extends Error {
  override name = 'InvalidRecordError'
}

/** `swapCommit` did not match the current commit. */
export class BadCommitSwapError extends Error {
  override name = 'BadCommitSwapError'
  constructor(cid: Cid) {
    super(`Commit was at ${cid.toString()}`)
  }
}

/** `swapRecord` did not match the record's current CID. */
export class BadRecordSwapError extends Error {
  override name = 'BadRecordSwapError'
  constructor(cid: Cid | null) {
    super(`Record was at ${cid?.toString() ?? 'null'}`)
  }
}

/** Other writers kept winning the race for the root; the client may retry. */
export class RepoBusyError extends Error {
  override name = 'RepoBusyError'
}

/** A record references a blob we do not hold, or describes it wrongly (reference PDS names). */
export class BlobRefError extends Error {
  override name = 'BlobRefError'
  constructor(
    message: string,
    readonly error: 'BlobNotFound' | 'InvalidMimeType' | 'InvalidSize',
  ) {
    super(message)
  }
}
