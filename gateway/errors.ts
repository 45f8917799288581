/**
 * Error codes of the public API (HTTP `{"error":{"code","message"}}` and
 * WebSocket `{type:"error", code, message}`), with their HTTP status. Stable:
 * clients branch on them; docs/gateway.md lists the same set (a test checks).
 */
export const API_ERRORS = {
  invalid_request: [400, 'the request is malformed: a field is missing, of the wrong type or out of range'],
  unauthenticated: [401, 'a valid token is required'],
  invalid_credentials: [401, 'unknown username or wrong password'],
  forbidden: [403, 'this user may not do this'],
  user_disabled: [403, 'this account was disabled by an operator'],
  not_found: [404, 'no such resource'],
  method_not_allowed: [405, 'this method is not supported on this path'],
  username_taken: [409, 'the username is already registered'],
  payload_too_large: [413, 'the body or frame is larger than allowed'],
  unsupported_media_type: [415, 'bodies must be JSON (application/json)'],
  rate_limited: [429, 'too many requests; slow down'],
  internal: [500, 'an unexpected error; the request may be retried'],
  unavailable: [503, 'the service could not answer now; retrying is safe'],
} as const satisfies Record<string, readonly [number, string]>;

export type ApiErrorCode = keyof typeof API_ERRORS;
export const API_ERROR_CODES = Object.keys(API_ERRORS) as ApiErrorCode[];

export class ApiError extends Error {
  override name = 'ApiError';
  /** For `rate_limited`: when trying again makes sense (HTTP `Retry-After`). */
  readonly retryAfterSeconds?: number;

  constructor(
    readonly code: ApiErrorCode,
    message: string = API_ERRORS[code][1],
    options?: { cause?: unknown; retryAfterSeconds?: number },
  ) {
    super(message, options);
    if (options?.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
  }

  get status(): number {
    return API_ERRORS[this.code][0];
  }
}

/** Any thrown value as an ApiError: unexpected ones become `internal` (and are logged by the caller). */
export function asApiError(error: unknown): ApiError {
  return error instanceof ApiError ? error : new ApiError('internal', undefined, { cause: error });
}
