import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { AppError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from './metrics.ts';
import { errorAnswer, pickRequestId, recordRequest, tooLarge } from './middleware.ts';

/** Bytes a refused body may still send before the connection is cut (lingering close). */
export const LINGER_BYTES = 16 << 20;
/** How long a refused connection is kept open to read (and drop) what the client still sends. */
export const LINGER_MS = 3_000;

const DECLARED_LENGTH = /^\d{1,15}$/;

/**
 * Reads request bodies under a per-route cap, a deadline and one budget of bytes held across all
 * connections (DESIGN.md, "Process, files and resources"). The lease fast path and the server's
 * reader in front of the Hono app both use it, so memory is bounded whatever clients send: past the
 * budget a body is refused `503 busy` with Retry-After, a slow one `408 request_timeout`.
 *
 * Cost on the grant path: a few integer operations per chunk and one Set insert and delete per
 * request; one interval per server (not a timer per request) cuts slow bodies.
 */
export interface BodyReader {
  /**
   * Reads `req`'s body whole, then calls `done(null, body)`; or calls `done(err)` once: an AppError
   * (`payload_too_large` 413, `busy` 503, `request_timeout` 408) the caller answers with
   * `refuseRequest()`, or `null` with no body when the client went away. With `budgeted`, the
   * bytes count against the budget until `done`; a caller that keeps the body longer holds them
   * with `hold()`. (The bulk import is not budgeted: one at a time, it is bounded by its own cap.)
   */
  read(
    req: IncomingMessage,
    maxBytes: number,
    timeoutMs: number,
    budgeted: boolean,
    done: (err: AppError | null, body?: Buffer) => void,
  ): void;
  /** Counts `n` bytes a caller keeps after read() against the budget; `release(n)` when it drops them. */
  hold(n: number): void;
  release(n: number): void;
  /** Bytes held now (tests, metrics). */
  used(): number;
  stop(): void;
}

/** Creates the reader with a budget of `budgetBytes`; checks deadlines every `tickMs`. */
export function createBodyReader(budgetBytes: number, tickMs = 1000): BodyReader {
  let used = 0;
  const pending = new Set<{ deadline: number; expire: () => void }>();
  const watchdog = setInterval(() => {
    const now = performance.now();
    for (const p of pending) if (p.deadline <= now) p.expire();
  }, tickMs);
  watchdog.unref();

  return {
    read(req, maxBytes, timeoutMs, budgeted, done) {
      const declared = req.headers['content-length'];
      if (declared !== undefined) {
        if (!DECLARED_LENGTH.test(declared) || Number(declared) > maxBytes)
          return done(tooLarge(maxBytes));
        // A declared length that cannot fit is refused before anything is read.
        if (budgeted && used + Number(declared) > budgetBytes) return done(overBudget());
      } else if (budgeted && used >= budgetBytes) return done(overBudget());

      const chunks: Buffer[] = [];
      let size = 0;
      let settled = false;
      const finish = (err: AppError | null, body?: Buffer): void => {
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
      req.on('data', (chunk: Buffer) => {
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
      clearInterval(watchdog);
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
 * Lingering close, as nginx does it: the refusal is answered with `Connection: close`, then what the
 * client still sends is read and dropped (up to LINGER_BYTES and LINGER_MS) instead of the socket
 * being closed under it. Closing with unread bytes makes the kernel send a reset, and a client
 * still writing its body (Node's fetch, undici) then reports EPIPE/ECONNRESET instead of the answer.
 * Call it before the answer ends (node:http closes a `Connection: close` socket with destroySoon()).
 */
export function lingerAfterAnswer(req: IncomingMessage): void {
  const socket = req.socket as Socket | null;
  if (!socket || socket.destroyed) return;
  // Under a flood of refused bodies, reading and dropping everything every client sends costs the
  // server's one thread (and memory churn) that its real clients need: past MAX_LINGERING sockets
  // at once, a refusal closes at once, as without lingering (measured with make chaos: 1,500
  // clients trickling 1 MB bodies took a normal client's slowest grant to ~590 ms without a cap).
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

/**
 * Answers a request the server refuses before the app sees it (body over its cap, over the
 * budget, too slow, no Host): the error envelope with a request id, `Connection: close` and a
 * lingering close, one log line and its count in the metrics, as the app would.
 */
export function refuseRequest(
  req: IncomingMessage,
  res: ServerResponse,
  err: AppError,
  log: Logger,
  metrics: Metrics,
  start: number,
): void {
  if (res.headersSent || res.destroyed) return;
  const given = req.headers['x-request-id'];
  const id = pickRequestId(typeof given === 'string' ? given : undefined);
  const a = errorAnswer(err, id, log);
  const text = JSON.stringify(a.body);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'x-request-id': id,
    'content-length': Buffer.byteLength(text),
    connection: 'close',
  };
  if (a.retryAfter !== undefined) headers['retry-after'] = String(a.retryAfter);
  lingerAfterAnswer(req);
  res.writeHead(a.status, headers);
  res.end(text);
  const url = req.url ?? '';
  const q = url.indexOf('?');
  recordRequest(log, metrics, {
    id,
    method: req.method ?? '-',
    path: q === -1 ? url : url.slice(0, q),
    status: a.status,
    ms: performance.now() - start,
  });
}
