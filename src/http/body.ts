import { isUtf8 } from 'node:buffer';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { AppError } from '../errors.ts';
import { formatBytes } from './limits.ts';

/** Bytes a refused body may still send before the connection is cut (lingering close). */
export const LINGER_BYTES = 16 << 20;
/** How long a refused connection is kept open to read (and drop) what the client still sends. */
export const LINGER_MS = 3_000;

/** A Content-Length we take: 1 to 15 decimal digits (below 2^53, so Number() is exact). */
const DECLARED_LENGTH = /^\d{1,15}$/;

/**
 * A request's declared body length (its Content-Length header): the number, `undefined` when it
 * declares none, `null` when the value is no length we take (not 1-15 decimal digits). The one
 * place Content-Length is read: the body reader's caps and the streamed sync import both use it.
 */
export function declaredLength(header: string | null | undefined): number | null | undefined {
  if (header === undefined || header === null) return undefined;
  return DECLARED_LENGTH.test(header) ? Number(header) : null;
}

/** The 413 `payload_too_large` for a body over `maxSize` bytes (details.limit_bytes). */
export function tooLarge(maxSize: number): AppError {
  return new AppError(
    'payload_too_large',
    `the request body is over the ${formatBytes(maxSize)} limit for this route`,
    { limit_bytes: maxSize },
  );
}

/**
 * A body's bytes as JSON. Bytes that are not UTF-8 are refused (RFC 8259 §8.1), never replaced by
 * U+FFFD: two different byte strings must not become one subject or tenant id. An empty body, or
 * one that is not a JSON value, is refused too: never a 500.
 *
 * @throws AppError `invalid_request` (details.issues, path `(root)`: invalid UTF-8, empty body,
 *   malformed JSON)
 */
export function jsonBody(bytes: Uint8Array | undefined): unknown {
  if (bytes !== undefined && !isUtf8(bytes))
    throw new AppError('invalid_request', 'the request body is not valid UTF-8', {
      issues: [{ path: '(root)', message: 'invalid UTF-8' }],
    });
  const text =
    bytes === undefined
      ? ''
      : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
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

/**
 * What the body reader reads: a node:http request, or a WHATWG body turned into a Readable with
 * its Content-Length (the app's fetch face, http/dispatch.ts).
 */
export interface BodySource {
  headers: Pick<IncomingHttpHeaders, 'content-length'>;
  on(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
  on(event: 'end' | 'error', listener: () => void): unknown;
}

/**
 * Reads request bodies under a per-route cap, a deadline and one budget of bytes held across all
 * connections. Every body the server takes goes through it (http/dispatch.ts: the lease routes,
 * the admin routes, and the app's fetch face), so memory is bounded whatever clients send: past the
 * budget a body is refused `503 busy` with Retry-After, a slow one `408 request_timeout`.
 *
 * Cost on the grant path: a few integer operations per chunk and one Set insert and delete per
 * request; one interval (not a timer per request) cuts slow bodies, and only while some are read.
 */
export interface BodyReader {
  /**
   * Reads `req`'s body whole, then calls `done(null, body)`; or calls `done(err)` once: an AppError
   * (`payload_too_large` 413, `busy` 503, `request_timeout` 408) the caller answers as a refusal
   * (the connection closes), or `null` with no body when the client went away. With `budgeted`, the
   * bytes count against the budget until `done`; a caller that keeps the body longer holds them
   * with `hold()`. (The bulk import is not budgeted: one at a time, it is bounded by its own cap.)
   */
  read(
    req: BodySource,
    maxBytes: number,
    timeoutMs: number,
    budgeted: boolean,
    done: (err: AppError | null, body?: Uint8Array) => void,
  ): void;
  /** Counts `n` bytes a caller keeps after read() against the budget; `release(n)` drops them. */
  hold(n: number): void;
  release(n: number): void;
  /** Bytes held now (tests, metrics). */
  used(): number;
  stop(): void;
}

/**
 * Creates the reader with a budget of `budgetBytes`; checks deadlines every `tickMs` while bodies
 * are being read (the interval stops when none is, so an idle server or an app under test holds no
 * timer).
 */
export function createBodyReader(budgetBytes: number, tickMs = 1000): BodyReader {
  let used = 0;
  const pending = new Set<{ deadline: number; expire: () => void }>();
  let watchdog: ReturnType<typeof setInterval> | undefined;
  let stopped = false;
  const tick = (): void => {
    const now = performance.now();
    for (const p of pending) if (p.deadline <= now) p.expire();
    if (pending.size === 0 || stopped) {
      clearInterval(watchdog);
      watchdog = undefined;
    }
  };

  return {
    read(req, maxBytes, timeoutMs, budgeted, done) {
      const declared = declaredLength(req.headers['content-length']);
      if (declared !== undefined) {
        // A declared length over the cap (or none we take) is refused before anything is read.
        if (declared === null || declared > maxBytes) return done(tooLarge(maxBytes));
        if (budgeted && used + declared > budgetBytes) return done(overBudget());
      } else if (budgeted && used >= budgetBytes) return done(overBudget());

      const chunks: Uint8Array[] = [];
      let size = 0;
      let settled = false;
      const finish = (err: AppError | null, body?: Uint8Array): void => {
        if (settled) return;
        settled = true;
        if (budgeted) used -= size;
        pending.delete(entry);
        chunks.length = 0;
        done(err, body);
      };
      const entry = {
        deadline: performance.now() + timeoutMs,
        expire: () => finish(slow(timeoutMs)),
      };
      pending.add(entry);
      if (watchdog === undefined && !stopped) {
        watchdog = setInterval(tick, tickMs);
        watchdog.unref();
      }
      req.on('data', (chunk) => {
        if (settled) return;
        size += chunk.length;
        if (budgeted) used += chunk.length;
        // A chunked body has no declared length: counted as it comes.
        if (size > maxBytes) return finish(tooLarge(maxBytes));
        if (budgeted && used > budgetBytes) return finish(overBudget());
        chunks.push(chunk);
      });
      req.on('end', () => finish(null, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
      // The client went away mid-body (or its socket was destroyed): nobody to answer.
      req.on('error', () => finish(null));
    },
    hold(n) {
      used += n;
    },
    release(n) {
      used -= n;
    },
    used: () => used,
    stop() {
      stopped = true;
      clearInterval(watchdog);
      watchdog = undefined;
    },
  };
}

function overBudget(): AppError {
  return new AppError(
    'busy',
    'the server holds as many request bodies as its memory budget allows; retry shortly',
    { retry_after_seconds: 1, reason: 'memory_budget' },
  );
}

function slow(timeoutMs: number): AppError {
  return new AppError(
    'request_timeout',
    `the request body did not arrive within ${timeoutMs / 1000} s`,
    { timeout_seconds: timeoutMs / 1000 },
  );
}

/** Sockets in a lingering close at most at once; counted by lingerAfterAnswer. */
export const MAX_LINGERING = 64;
let lingering = 0;

/**
 * Lingering close, as nginx does it: the refusal is answered with `Connection: close`, then what
 * the client still sends is read and dropped (up to LINGER_BYTES and LINGER_MS) instead of the
 * socket being closed under it. Closing with unread bytes makes the kernel send a reset, and a
 * client still writing its body (Node's fetch, undici) then reports EPIPE/ECONNRESET instead of
 * the answer. Call it before the answer ends (node:http closes a `Connection: close` socket with
 * destroySoon()).
 */
export function lingerAfterAnswer(req: IncomingMessage): void {
  const socket = req.socket as Socket | null;
  if (!socket || socket.destroyed) return;
  // Under a flood of refused bodies, reading and dropping everything every client sends costs the
  // server's one thread (and memory churn) that its real clients need: past MAX_LINGERING sockets
  // at once, a refusal closes at once, as without lingering (bench/README.md, "Why the code is as
  // it is": the lingering cap).
  if (lingering >= MAX_LINGERING) return;
  lingering++;
  socket.once('close', () => lingering--);
  let dropped = 0;
  if (!req.complete) {
    req.on('data', (chunk: Buffer) => {
      dropped += chunk.length;
      if (dropped > LINGER_BYTES) socket.destroy();
    });
    req.on('error', () => {});
    req.resume();
  }
  // node:http calls destroySoon() once a `Connection: close` answer is written: end our side (FIN
  // after the answer) and keep reading until the client closes, or the linger bounds are reached.
  socket.destroySoon = function lingeringClose(this: Socket) {
    if (this.writable) this.end();
    const timer = setTimeout(() => this.destroy(), LINGER_MS);
    timer.unref();
    this.once('close', () => clearTimeout(timer));
    if (req.complete) this.resume();
  };
}
