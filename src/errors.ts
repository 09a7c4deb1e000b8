/**
 * The XRPC error family: an error with an HTTP status, an error name and a
 * message, as atproto clients expect them (`{error, message}` bodies).
 * Names, statuses and default messages follow `@atproto/xrpc-server`, so
 * clients see what the reference PDS would send.
 *
 * It belongs to no layer and imports nothing: domain code may throw these
 * where the protocol fixes the answer (auth, forwarding), and the edge
 * (src/http/errors.ts) is the one place any error becomes a response.
 */

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
    /** Response headers the protocol requires with this error (an OAuth `WWW-Authenticate` challenge). */
    readonly headers: Readonly<Record<string, string>> = {},
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

/**
 * A signed-out password session's access token (or a refresh token that was
 * revoked): `ExpiredToken`, as the reference answers a revoked refresh token,
 * so clients try to refresh, fail, and end the session cleanly.
 */
export class SessionRevokedError extends InvalidRequestError {
  constructor() {
    super('Token has been revoked', 'ExpiredToken')
  }
}
