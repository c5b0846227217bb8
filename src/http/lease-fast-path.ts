import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.ts';
import type { Metrics } from './metrics.ts';
import type { StorageHealth } from '../storage/health.ts';
import type { LeaseAnswer, LeaseRoutePath } from './lease-api.ts';
import {
  decodeBody,
  errorAnswer,
  parseJsonBody,
  pickRequestId,
  recordRequest,
} from './middleware.ts';
import { lingerAfterAnswer, type BodyReader } from './body.ts';

export interface LeaseFastPathDeps {
  api: Record<LeaseRoutePath, (body: unknown) => Promise<LeaseAnswer>>;
  log: Logger;
  metrics: Metrics;
  /** The lease routes' body cap (limits.ts). */
  bodyLimit: number;
  /** Hears of storage failures (full or read-only disk), for one log line per episode and readiness. */
  storageHealth?: Pick<StorageHealth, 'failed'>;
  /** How long the body may take to arrive (ms). */
  bodyTimeoutMs: number;
  /** The server's body reader: its budget and deadline watchdog (body.ts). */
  bodies: BodyReader;
}

/**
 * The client lease routes (grant, renew, release) served straight on node:http, the hot path of a
 * license server: every application start on the network comes through it. Going through the Hono
 * app costs each request its Request, Response and Headers objects and a middleware chain: about a
 * fifth of a grant's time on the server's one thread. Same behaviour as the Hono routes, which
 * stay (tests use them through app.request()): the same handlers (lease-api.ts), request id, body
 * cap and budget, error envelope, log line and metrics; test/http/fast-path.test.ts holds the two side by side.
 *
 * Returns false for any other request, which the caller hands to the Hono app.
 */
export function createLeaseFastPath({
  api,
  log,
  metrics,
  bodyLimit,
  bodyTimeoutMs,
  bodies,
  storageHealth,
}: LeaseFastPathDeps) {
  const routes = new Map<string, (body: unknown) => Promise<LeaseAnswer>>(Object.entries(api));

  return function serveLease(req: IncomingMessage, res: ServerResponse): boolean {
    if (req.method !== 'POST') return false;
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const handler = routes.get(path);
    if (!handler) return false;

    const start = performance.now();
    const given = req.headers['x-request-id'];
    const id = pickRequestId(typeof given === 'string' ? given : undefined);
    let answered = false;

    const answer = (status: number, body: unknown, close = false, retryAfter?: number): void => {
      if (answered) return;
      answered = true;
      const text = JSON.stringify(body);
      const headers: Record<string, string | number> = {
        'content-type': 'application/json',
        'x-request-id': id,
        'content-length': Buffer.byteLength(text),
      };
      if (retryAfter !== undefined) headers['retry-after'] = String(retryAfter);
      // A body not read whole: closing tells the client to stop sending it; what it still sends is
      // read and dropped first, so it reads this answer (lingering close).
      if (close) {
        headers.connection = 'close';
        lingerAfterAnswer(req);
      }
      res.writeHead(status, headers);
      res.end(text);
      recordRequest(log, metrics, {
        id,
        method: 'POST',
        path,
        status,
        ms: performance.now() - start,
      });
    };
    const fail = (err: unknown): void => {
      const a = errorAnswer(err, id, log, storageHealth);
      answer(a.status, a.body, a.close, a.retryAfter);
    };

    bodies.read(req, bodyLimit, bodyTimeoutMs, true, (err, raw) => {
      // The client went away mid-body: nobody to answer.
      if (err === null && raw === undefined) return void (answered = true);
      // Refused (over the cap or the budget, too slow): the answer closes, after a lingering close.
      if (err !== null) {
        const a = errorAnswer(err, id, log);
        return answer(a.status, a.body, true, a.retryAfter);
      }
      let body: unknown;
      try {
        body = parseJsonBody(decodeBody(raw!));
      } catch (e) {
        return fail(e);
      }
      handler(body).then((r) => answer(r.status, r.body), fail);
    });
    return true;
  };
}
