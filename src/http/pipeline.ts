/**
 * The request pipeline: what every answer of the server goes through, whichever way it was made
 * (the lease routes served straight on node:http, the admin routes routed by Hono, the 404, an
 * error thrown anywhere, a refusal before the body, node:http's own protocol errors). Framework
 * free: it knows requests as an Exchange and answers as an Answer, never a Hono context.
 *
 * One request, start to end:
 *   begin()    request id (the caller's when sane), method, path, start time;
 *   json() / failure()   the answer: its status, JSON text and headers; failure() makes the error
 *              envelope of anything thrown;
 *   end()      one log line and its count in the metrics.
 * The headers every answer carries come from one function, `answerHeaders` (the header policy):
 * add a header there and every route has it (test/http/pipeline.test.ts holds all of them to it).
 */
import { AppError, toEnvelope } from '../errors.ts';
import { newId } from '../ids.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from './metrics.ts';
import { storageFailure } from '../storage/failures.ts';
import type { StorageHealth } from '../storage/health.ts';

/** One request in flight: what its answer headers, log line and metrics need. */
export interface Exchange {
  /** The caller's X-Request-Id when sane, else a new `req_…` id; echoed on the answer. */
  readonly id: string;
  readonly method: string;
  /** The path as sent, without the query string (never logged past 200 characters). */
  readonly path: string;
  /** performance.now() when the request was taken, milliseconds. */
  readonly start: number;
  /** The id of the API token that authenticated the request (set by requirePermission): logged. */
  tokenId: string | undefined;
  /**
   * The request body, read whole under its route's cap before any handler runs (http/body.ts);
   * undefined without a body, and for the streamed sync import, whose route reads the stream.
   */
  body: Uint8Array | undefined;
}

/** An answer ready to be written: status, JSON text and every header. */
export interface Answer {
  status: number;
  text: string;
  headers: Record<string, string>;
  /**
   * The connection closes after this answer (`Connection: close` is among the headers): a body not
   * read whole, or a refusal before the body. On node:http the socket then lingers (http/body.ts).
   */
  close: boolean;
}

/** The header policy: a function of the request id to the headers every answer carries. */
export type HeaderPolicy = (requestId: string) => Record<string, string>;

/**
 * The headers every answer carries, on every route, whichever way it was made: the one place to
 * add a header to all of them. Returns a new object the caller may add to.
 */
export function answerHeaders(requestId: string): Record<string, string> {
  return { 'x-request-id': requestId };
}

export interface PipelineDeps {
  log: Logger;
  metrics: Metrics;
  /** Hears of storage failures (full or read-only disk): one log line per episode, readiness. */
  storage?: Pick<StorageHealth, 'failed'> | undefined;
  /** The header policy; `answerHeaders` unless a test puts a probe header in it. */
  headers?: HeaderPolicy | undefined;
}

export interface Pipeline {
  /** Takes a request: `url` may carry a query (dropped); `givenId` is its X-Request-Id header. */
  begin(method: string, url: string, givenId: string | string[] | null | undefined): Exchange;
  /** A JSON answer: the policy's headers, `content-type: application/json` and the length. */
  json(ex: Exchange, status: number, body: unknown): Answer;
  /**
   * The error envelope for anything thrown (see errorAnswer); `close` forces `Connection: close`
   * (a refusal before the body was read).
   */
  failure(ex: Exchange, err: unknown, close?: boolean): Answer;
  /** The policy's headers for an answer made elsewhere (a Hono route's Response). */
  headers(ex: Exchange): Record<string, string>;
  /** The request's log line and its count in the metrics; `extra` fields join the line. */
  end(ex: Exchange, status: number, extra?: Record<string, string>): void;
}

const INCOMING_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** The caller's X-Request-Id when it is sane (1-64 of `A-Za-z0-9._-`), else a new one. */
export function pickRequestId(given: string | string[] | null | undefined): string {
  return typeof given === 'string' && INCOMING_ID.test(given) ? given : newId('req', 12);
}

/** The path of a request target: everything before the query string. */
export function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** Makes the pipeline of one server (or one app under test): its log, metrics and header policy. */
export function createPipeline({
  log,
  metrics,
  storage,
  headers = answerHeaders,
}: PipelineDeps): Pipeline {
  function json(ex: Exchange, status: number, body: unknown): Answer {
    const text = JSON.stringify(body);
    const h = headers(ex.id);
    h['content-type'] = 'application/json';
    h['content-length'] = String(Buffer.byteLength(text));
    return { status, text, headers: h, close: false };
  }

  return {
    begin(method, url, givenId) {
      return {
        id: pickRequestId(givenId),
        method,
        path: pathOf(url),
        start: performance.now(),
        tokenId: undefined,
        body: undefined,
      };
    },
    json,
    failure(ex, err, close = false) {
      const e = errorAnswer(err, ex.id, log, storage);
      const a = json(ex, e.status, e.body);
      if (e.retryAfter !== undefined) a.headers['retry-after'] = String(e.retryAfter);
      if (close || e.close) {
        a.headers.connection = 'close';
        a.close = true;
      }
      return a;
    },
    headers: (ex) => headers(ex.id),
    end(ex, status, extra) {
      const ms = performance.now() - ex.start;
      metrics.observe(ex.method, status, ms);
      log.info('request', {
        request_id: ex.id,
        method: ex.method,
        path: ex.path.slice(0, 200),
        status,
        ms: Math.round(ms * 10) / 10,
        ...(ex.tokenId !== undefined ? { token_id: ex.tokenId } : {}),
        ...extra,
      });
    },
  };
}

/**
 * What an error answers. Our own errors as they are; a body over the cap, or too slow, is not read
 * whole, so the connection closes after the answer (the client stops sending, a draining server is
 * not held up; the server drops what still comes for a moment first, see http/body.ts).
 * A storage failure the environment caused (lock, full or read-only disk) gets its own code
 * (storage/failures.ts). Anything else is our bug: the stack goes to the log, the client gets a
 * generic `internal` message with the request id.
 */
function errorAnswer(
  err: unknown,
  requestId: string,
  log: Logger,
  storage?: Pick<StorageHealth, 'failed'>,
): {
  status: AppError['status'];
  body: ReturnType<typeof toEnvelope>;
  close: boolean;
  retryAfter: number | undefined;
} {
  // A full or read-only disk is logged once per episode (storage/health.ts), not per request.
  const s = storage?.failed(err);
  if (!(err instanceof AppError)) err = s ?? storageFailure(err) ?? err;
  if (err instanceof AppError)
    return {
      status: err.status,
      body: toEnvelope(err, requestId),
      close: err.code === 'payload_too_large' || err.code === 'request_timeout',
      retryAfter: err.retryAfterSeconds,
    };
  log.error('unhandled error', {
    request_id: requestId,
    error: (err as Error)?.stack ?? String(err),
  });
  const internal = new AppError(
    'internal',
    'internal error; the server log has the detail under this request id',
  );
  return {
    status: internal.status,
    body: toEnvelope(internal, requestId),
    close: false,
    retryAfter: undefined,
  };
}
