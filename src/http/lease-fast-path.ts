import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.ts';
import type { Metrics } from './metrics.ts';
import type { StorageHealth } from '../storage/health.ts';
import type { LeaseAnswer, LeaseRoutePath } from './lease-api.ts';
import { errorAnswer, parseJsonBody, pickRequestId, recordRequest, tooLarge } from './middleware.ts';

export interface LeaseFastPathDeps {
  api: Record<LeaseRoutePath, (body: unknown) => Promise<LeaseAnswer>>;
  log: Logger;
  metrics: Metrics;
  /** The body cap, as on every other route. */
  bodyLimit: number;
  /** Hears of storage failures (full or read-only disk), for one log line per episode and readiness. */
  storageHealth?: Pick<StorageHealth, 'failed'>;
}

const DECLARED_LENGTH = /^\d{1,15}$/;

/**
 * The client lease routes (grant, renew, release) served straight on node:http, the hot path of a
 * license server: every application start on the network comes through it. Going through the Hono
 * app costs each request its Request, Response and Headers objects and a middleware chain: about a
 * fifth of a grant's time on the server's one thread. Same behaviour as the Hono routes, which
 * stay (tests use them through app.request()): the same handlers (lease-api.ts), request id, body
 * cap, error envelope, log line and metrics; test/http/fast-path.test.ts holds the two side by side.
 *
 * Returns false for any other request, which the caller hands to the Hono app.
 */
export function createLeaseFastPath({ api, log, metrics, bodyLimit, storageHealth }: LeaseFastPathDeps) {
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
      const headers: Record<string, string | number> = { 'content-type': 'application/json', 'x-request-id': id, 'content-length': Buffer.byteLength(text) };
      // A body over the cap is not read: closing tells the client to stop sending it.
      if (close) headers.connection = 'close';
      if (retryAfter !== undefined) headers['retry-after'] = String(retryAfter);
      res.writeHead(status, headers);
      res.end(text);
      recordRequest(log, metrics, { id, method: 'POST', path, status, ms: performance.now() - start });
    };
    const fail = (err: unknown): void => {
      const a = errorAnswer(err, id, log, storageHealth);
      answer(a.status, a.body, a.close, a.retryAfter);
    };

    const declared = req.headers['content-length'];
    if (declared !== undefined && (!DECLARED_LENGTH.test(declared) || Number(declared) > bodyLimit)) {
      fail(tooLarge(bodyLimit));
      return true;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      if (answered) return;
      size += chunk.length;
      // A chunked body has no declared length: counted as it comes.
      if (size > bodyLimit) return fail(tooLarge(bodyLimit));
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (answered) return;
      let body: unknown;
      try {
        body = parseJsonBody((chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('utf8'));
      } catch (err) {
        return fail(err);
      }
      handler(body).then((r) => answer(r.status, r.body), fail);
    });
    // The client went away mid-body: nobody to answer.
    req.on('error', () => {
      answered = true;
    });
    return true;
  };
}
