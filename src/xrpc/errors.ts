/**
 * XRPC errors: the one typed error and the one place any error becomes a
 * response body. Names, statuses and default messages follow
 * `@atproto/xrpc-server` so clients see what the reference PDS would send.
 * Unknown errors become a bare 500 that never echoes internals.
 */
import { ConfigError } from '../env'
import { BlobTooLargeError, LengthRequiredError } from '../blobs/store'
import { BadCommitSwapError, BadRecordSwapError, BlobRefError, InvalidRecordError, RepoBusyError } from '../repo/errors'

const DEFAULT_MESSAGES: Record<number, [name: string, message: string]> = {
  400: ['InvalidRequest', 'Invalid Request'],
  401: ['AuthenticationRequired', 'Authentication Required'],
  403: ['Forbidden', 'Forbidden'],
  404: ['XRPCNotSupported', 'XRPC Not Supported'],
  413: ['PayloadTooLarge', 'Payload Too Large'],
  429: ['RateLimitExceeded', 'Rate Limit Exceeded'],
  500: ['InternalServerError', 'Internal Server Error'],
  501: ['MethodNotImplemented', 'Method Not Implemented'],
  502: ['UpstreamFailure', 'Upstream Failure'],
  503: ['NotEnoughResources', 'Not Enough Resources'],
}

export class XrpcError extends Error {
  readonly error: string
  constructor(
    readonly status: number,
    message?: string,
    error?: string,
  ) {
    const [defaultName, defaultMessage] = DEFAULT_MESSAGES[status] ?? DEFAULT_MESSAGES[500]
    super(message || defaultMessage)
    this.error = error ?? defaultName
  }

  get body(): { error: string; message: string } {
    return { error: this.error, message: this.message }
  }
}

export class InvalidRequestError extends XrpcError {
  constructor(message?: string, error?: string) {
    super(400, message, error)
  }
}

export class AuthRequiredError extends XrpcError {
  constructor(message?: string, error?: string) {
    super(401, message, error)
  }
}

export class ForbiddenError extends XrpcError {
  constructor(message?: string, error?: string) {
    super(403, message, error)
  }
}

export class MethodNotImplementedError extends XrpcError {
  constructor() {
    super(501)
  }
}

export class RateLimitExceededError extends XrpcError {
  constructor(message?: string) {
    super(429, message)
  }
}

/** Maps any thrown value to the XRPC error the client should see. */
export const toXrpcError = (err: unknown): XrpcError => {
  if (err instanceof XrpcError) return err
  if (err instanceof InvalidRecordError) return new InvalidRequestError(err.message)
  if (err instanceof BadCommitSwapError || err instanceof BadRecordSwapError) {
    return new InvalidRequestError(err.message, 'InvalidSwap')
  }
  if (err instanceof BlobRefError) return new InvalidRequestError(err.message, err.error)
  if (err instanceof BlobTooLargeError) return new XrpcError(413, err.message)
  if (err instanceof LengthRequiredError) return new XrpcError(411, err.message, 'LengthRequired')
  if (err instanceof RepoBusyError) return new XrpcError(503, err.message)
  if (err instanceof ConfigError) {
    // The operator must see which setting is wrong; it names no secret value.
    return new XrpcError(500, `Server misconfigured: ${err.message}`)
  }
  return new XrpcError(500)
}
