import { isUtf8 } from 'node:buffer';
import type { MiddlewareHandler, Context as HonoContext } from 'hono';
import { AppError, toEnvelope, type ErrorEnvelope } from '../errors.ts';
import { newId } from '../ids.ts';
import type { Logger } from '../log.ts';
import type { ApiTokenService } from '../domain/api-tokens.ts';
import type { AppEnv } from './types.ts';
import type { Metrics } from './metrics.ts';
import { storageFailure } from '../storage/failures.ts';
import type { StorageHealth } from '../storage/health.ts';
import { ROUTES, roleAllows, type RouteKey, type RouteRule } from './permissions.ts';
import { formatBytes } from './limits.ts';

const INCOMING_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** The caller's X-Request-Id when it is sane, else a new one. */
export function pickRequestId(given: string | undefined): string {
  return given !== undefined && INCOMING_ID.test(given) ? given : newId('req', 12);
}

/** Takes a sane X-Request-Id from the caller or makes one; echoes it on the answer. */
export function requestId(): MiddlewareHandler<AppEnv> {
  return async function requestIdMiddleware(c, next) {
    const id = pickRequestId(c.req.header('x-request-id'));
    c.set('requestId', id);
    c.header('X-Request-Id', id);
    await next();
  };
}

/** One JSON log line per request: ids, route, status and time; never bodies, tokens or query strings. */
export function requestLog(
  log: Logger,
  metrics: Metrics,
  now: () => number = () => performance.now(),
): MiddlewareHandler<AppEnv> {
  return async function requestLogMiddleware(c, next) {
    const start = now();
    await next();
    const principal = c.get('principal');
    recordRequest(log, metrics, {
      id: c.get('requestId'),
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      ms: now() - start,
      tokenId: principal?.tokenId,
    });
  };
}

/** An answered request: its line in the log and its count in the metrics (the Hono app and the lease fast path). */
export function recordRequest(
  log: Logger,
  metrics: Metrics,
  r: {
    id: string;
    method: string;
    path: string;
    status: number;
    ms: number;
    tokenId?: string | undefined;
  },
): void {
  metrics.observe(r.method, r.status, r.ms);
  log.info('request', {
    request_id: r.id,
    method: r.method,
    path: r.path.slice(0, 200),
    status: r.status,
    ms: Math.round(r.ms * 10) / 10,
    ...(r.tokenId !== undefined ? { token_id: r.tokenId } : {}),
  });
}

/**
 * What an error answers. Our own errors as they are; a body over the cap, or too slow, is not read
 * whole, so the connection closes after the answer (the client stops sending, a draining server is
 * not held up; the server drops what still comes for a moment first, see http/body.ts).
 * A storage failure the environment caused (lock, full or read-only disk) gets its own code
 * (storage/failures.ts). Anything else is our bug: the stack goes to the log, the client gets a
 * generic message.
 */
export function errorAnswer(
  err: unknown,
  requestId: string,
  log: Logger,
  storage?: Pick<StorageHealth, 'failed'>,
): {
  status: AppError['status'];
  body: ErrorEnvelope;
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

/**
 * Caps the body size; the answer is the 413 envelope. A declared Content-Length over the cap is
 * refused before anything is read; a chunked body is counted as readJson() reads it. (Hono's own
 * bodyLimit touches `c.req.raw.body`, which makes the Node adapter build a WHATWG stream for every
 * request: a tenth of the grant path.)
 */
export function limitBody(maxSize: number): MiddlewareHandler<AppEnv> {
  return async function limitBodyMiddleware(c, next) {
    const declared = c.req.header('content-length');
    if (declared !== undefined && (!/^\d{1,15}$/.test(declared) || Number(declared) > maxSize))
      throw tooLarge(maxSize);
    c.set('bodyLimit', maxSize);
    await next();
  };
}

/** The 413 for a body over `maxSize` bytes. */
export function tooLarge(maxSize: number): AppError {
  return new AppError(
    'payload_too_large',
    `the request body is over the ${formatBytes(maxSize)} limit for this route`,
    { limit_bytes: maxSize },
  );
}

/**
 * The body as text, never more than the route's cap. On the listening server the body was already
 * read under its cap, the budget and a deadline (http/body.ts), and the adapter serves it from
 * memory; through app.request() it is read here.
 */
async function readBodyText(c: HonoContext<AppEnv>): Promise<string> {
  const max = c.get('bodyLimit') ?? 1 << 20;
  if (
    c.req.header('content-length') !== undefined &&
    c.req.header('transfer-encoding') === undefined
  ) {
    // The length was checked against the cap, and the HTTP parser reads exactly that many bytes.
    return decodeBody(new Uint8Array(await c.req.arrayBuffer()));
  }
  const body = c.req.raw.body;
  if (!body) return '';
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      throw tooLarge(max);
    }
    chunks.push(value);
  }
  return decodeBody(Buffer.concat(chunks));
}

/**
 * A body's bytes as text. Bytes that are not UTF-8 are refused (RFC 8259 §8.1), never replaced by
 * U+FFFD: two different byte strings must not become one subject or tenant id.
 *
 * @throws AppError `invalid_request`
 */
export function decodeBody(bytes: Uint8Array): string {
  if (!isUtf8(bytes))
    throw new AppError('invalid_request', 'the request body is not valid UTF-8', {
      issues: [{ path: '(root)', message: 'invalid UTF-8' }],
    });
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}

/** Bearer-token authentication plus the route's row of the permission table. */
export function requirePermission(
  tokens: () => ApiTokenService,
  route: RouteKey,
): MiddlewareHandler<AppEnv> {
  const rule: RouteRule = ROUTES[route];
  return async function authMiddleware(c, next) {
    const header = c.req.header('authorization');
    const m = header === undefined ? null : /^Bearer ([^\s]+)$/i.exec(header.trim());
    if (!m) {
      throw new AppError(
        'unauthorized',
        header === undefined
          ? 'this route needs an API token'
          : 'the Authorization header must be "Bearer <token>"',
        {},
        'send Authorization: Bearer bpls_…',
      );
    }
    const principal = tokens().authenticate(m[1]!);
    if (!roleAllows(principal.role, rule.permission)) {
      throw new AppError(
        'forbidden',
        `a ${principal.role} token may not do this (needs ${rule.permission})`,
      );
    }
    if (rule.global && principal.tenantId !== null) {
      throw new AppError(
        'forbidden',
        `a token limited to tenant ${principal.tenantId} may not do this: it spans every tenant`,
      );
    }
    c.set('principal', principal);
    await next();
  };
}

/** Reads the body as JSON. Anything that is not a JSON value is invalid_request, never a 500. */
export async function readJson(c: HonoContext<AppEnv>): Promise<unknown> {
  return parseJsonBody(await readBodyText(c));
}

/** The body text as JSON (readJson, and the lease fast path, which reads the body itself). */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === '')
    throw new AppError('invalid_request', 'the request body is empty; send a JSON object', {
      issues: [{ path: '(root)', message: 'empty body' }],
    });
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new AppError(
      'invalid_request',
      `the request body is not valid JSON: ${(err as Error).message}`,
      { issues: [{ path: '(root)', message: 'malformed JSON' }] },
    );
  }
}
