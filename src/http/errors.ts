/**
 * The edge: the one place a thrown value becomes an XRPC error response.
 * Domain code throws its own small error classes (repo, blobs, config); they
 * are translated here to the names and statuses the reference PDS uses.
 * Anything unknown becomes a bare 500 that never echoes internals (the cause
 * is logged under the request id instead).
 */
import type { Context } from 'hono'
import { AccountInactiveError } from '../account-status'
import { BlobTooLargeError, EmptyBlobError, LengthRequiredError } from '../blobs/store'
import { ConfigError } from '../env'
import { InvalidRequestError, XrpcError } from '../errors'
import { BadCommitSwapError, BadRecordSwapError, BlobRefError, InvalidRecordError, RepoBusyError } from '../repo/errors'
import { InvalidImportError } from '../repo/import/car-stream'
import type { AppEnv } from './context'

/** Maps any thrown value to the XRPC error the client should see. */
export const toXrpcError = (err: unknown): XrpcError => {
  if (err instanceof XrpcError) return err
  if (err instanceof InvalidRecordError || err instanceof InvalidImportError) return new InvalidRequestError(err.message)
  if (err instanceof BadCommitSwapError || err instanceof BadRecordSwapError) {
    return new InvalidRequestError(err.message, 'InvalidSwap')
  }
  if (err instanceof BlobRefError) return new InvalidRequestError(err.message, err.error)
  if (err instanceof AccountInactiveError) {
    return new XrpcError(401, err.message, err.status === 'deactivated' ? 'AccountDeactivated' : 'AccountTakedown')
  }
  if (err instanceof EmptyBlobError) return new InvalidRequestError(err.message)
  if (err instanceof BlobTooLargeError) return new XrpcError(413, err.message)
  if (err instanceof LengthRequiredError) return new XrpcError(411, err.message, 'LengthRequired')
  if (err instanceof RepoBusyError) return new XrpcError(503, err.message)
  if (err instanceof ConfigError) {
    // The operator must see which setting is wrong; it names no secret value.
    return new XrpcError(500, `Server misconfigured: ${err.message}`)
  }
  return new XrpcError(500)
}

/** `app.onError`: the response for any error a route or middleware threw. */
export const errorResponse = (err: unknown, c: Context<AppEnv>): Response => {
  const xrpcErr = toXrpcError(err)
  if (xrpcErr.status >= 500 && !(err instanceof XrpcError)) {
    // Logged for the operator with the request id; the client gets no internals.
    console.error(JSON.stringify({ requestId: c.get('requestId'), error: String((err as Error)?.stack ?? err) }))
  }
  c.header('x-request-id', c.get('requestId'))
  for (const [name, value] of Object.entries(xrpcErr.headers)) c.header(name, value)
  return c.json(xrpcErr.body, xrpcErr.status as 400)
}
