/**
 * One error type with stable codes. Only this file knows HTTP statuses; the table below is also
 * the error-code reference in the README.
 */
export const ERROR_STATUS = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  seat_not_assigned: 403,
  feature_not_entitled: 403,
  entitlement_inactive: 403,
  not_found: 404,
  request_timeout: 408,
  conflict: 409,
  seats_exhausted: 409,
  quota_exhausted: 409,
  managed_by_bundle: 409,
  lease_expired: 410,
  lease_released: 410,
  payload_too_large: 413,
  headers_too_large: 431,
  bundle_rejected: 422,
  internal: 500,
  clock_suspect: 503,
  busy: 503,
  storage_unavailable: 503,
  storage_full: 507,
} as const satisfies Record<
  string,
  400 | 401 | 403 | 404 | 408 | 409 | 410 | 413 | 422 | 431 | 500 | 503 | 507
>;

export type ErrorCode = keyof typeof ERROR_STATUS;
export type ErrorStatus = (typeof ERROR_STATUS)[ErrorCode];

export const ERROR_DESCRIPTIONS = {
  invalid_request:
    'the request is malformed or a field is invalid; details.issues lists each problem',
  unauthorized: 'missing, malformed, unknown, expired or revoked API token',
  forbidden: 'the token is valid but its role may not do this',
  seat_not_assigned: 'the entitlement assigns seats manually and the subject holds none',
  feature_not_entitled: 'a requested feature is not in the entitlement',
  entitlement_inactive:
    'the entitlement is suspended, revoked, expired or pending (details.reason)',
  not_found: 'no such route or resource (or not visible to this token)',
  request_timeout:
    'the request (its headers or its body) did not arrive in time; the connection is closed',
  conflict: 'the request conflicts with the current state',
  seats_exhausted: 'every seat of the entitlement is in use',
  quota_exhausted:
    'every unit of the quota is in use (details.quota, limit, used); remove an installation first',
  managed_by_bundle: 'the entitlement is managed by vendor bundles and cannot be edited locally',
  lease_expired: 'the lease has expired; request a new one',
  lease_released: 'the lease was released or revoked; request a new one',
  payload_too_large: 'the request body is over the limit for this route',
  headers_too_large: "the request headers are over the server's limit (16 KiB in all)",
  bundle_rejected: 'a sync bundle failed a check (details.rule names it)',
  internal: 'an unexpected error; the server log has the detail under the request id',
  clock_suspect: 'the system clock is behind the last trusted time; fix the clock',
  busy: 'the database is locked by another process, or the server is at its memory budget; retry after Retry-After seconds',
  storage_unavailable:
    'the database cannot be written (read-only file system, permissions, an I/O error); nothing was changed',
  storage_full: 'the disk holding the data directory is full; nothing was changed',
} as const satisfies Record<ErrorCode, string>;

export interface ErrorDetails {
  [key: string]: unknown;
}

/** The project's only error class: a stable code, a message a person can act on, and details. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}, hint?: string) {
    super(message);
    this.name = 'AppError';
    this.code = code;
    this.details = details;
    this.hint = hint;
  }

  get status(): ErrorStatus {
    return ERROR_STATUS[this.code];
  }

  /** Seconds for a Retry-After header: `details.retry_after_seconds` when set (503 busy, 503 storage). */
  get retryAfterSeconds(): number | undefined {
    const v = this.details.retry_after_seconds;
    return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.ceil(v) : undefined;
  }
}

export function isAppError(value: unknown): value is AppError {
  return value instanceof AppError;
}

/** The JSON error envelope shared by HTTP answers and the CLI's --json output. */
export interface ErrorEnvelope {
  error: { code: ErrorCode; message: string; request_id?: string; details: ErrorDetails };
}

export function toEnvelope(err: AppError, requestId?: string): ErrorEnvelope {
  const error: ErrorEnvelope['error'] = {
    code: err.code,
    message: err.message,
    details: err.details,
  };
  if (requestId !== undefined) error.request_id = requestId;
  return { error };
}
