/**
 * What a failed call to the license server throws. `code` is the server's own error code (the
 * `error.code` of its JSON envelope: `seats_exhausted`, `entitlement_inactive`, `lease_released`, …)
 * with its `details` and `request_id`, or one of the client's own codes when no envelope came back:
 *
 * - `unreachable`: no server URL answered (connection refused, reset, DNS) — `details.attempts`
 *   lists each URL and why;
 * - `timeout`: the server did not answer within `timeoutMs`;
 * - `aborted`: the caller's AbortSignal fired;
 * - `bad_response`: an answer that is not the server's JSON (a proxy's HTML page, say);
 * - `token_rejected`: the server answered, but its token failed offline verification
 *   (`details.token_error` holds the TokenError code; `cause` the TokenError itself).
 */
export class LicenseError extends Error {
  readonly code: string;
  /** The HTTP status, when a server answered. */
  readonly status: number | undefined;
  readonly details: Record<string, unknown>;
  /** The server's request id, to find the request in its log. */
  readonly requestId: string | undefined;
  /** The server URL that gave this answer, when one did. */
  readonly url: string | undefined;

  constructor(
    code: string,
    message: string,
    opts: {
      status?: number;
      details?: Record<string, unknown>;
      requestId?: string;
      url?: string;
      cause?: unknown;
    } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'LicenseError';
    this.code = code;
    this.status = opts.status;
    this.details = opts.details ?? {};
    this.requestId = opts.requestId;
    this.url = opts.url;
  }

  /** True when trying again (later, or at another URL) may succeed: network trouble, 5xx, 429. */
  get retryable(): boolean {
    return (
      this.code === 'unreachable' ||
      this.code === 'timeout' ||
      this.code === 'bad_response' ||
      (this.status !== undefined && (this.status >= 500 || this.status === 429))
    );
  }
}
