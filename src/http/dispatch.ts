/**
 * Dispatch: where a request enters, and which way it goes. Two faces, one pipeline
 * (http/pipeline.ts) under both:
 *
 * - `serveNode`, the server's node:http listener. The client lease routes (grant, renew, release)
 *   are served straight on node:http, the hot path of a license server: going through the Hono
 *   adapter costs each request its Request, Response and Headers objects on the server's one
 *   thread (bench/README.md, "Why the code is as it is": the direct lease path). Every other request has its body read here (its
 *   route's cap, the budget of held bytes, a deadline) and goes to the admin router through the
 *   @hono/node-server adapter.
 * - `fetch`, the WHATWG face (app.request() in tests): the same bodies read by the same reader
 *   under the same caps, the same lease handlers, the same router.
 *
 * Either way a request gets its Exchange first (request id, start time), and every answer (a lease
 * answer, a router's Response, the 404, an error thrown anywhere, a refusal before the body) gets
 * the pipeline's headers, error envelope, log line and metrics count. test/http/pipeline.test.ts
 * holds the two faces to the same answers on every route shape.
 */
import { getRequestListener, RequestError, type HttpBindings } from '@hono/node-server';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { AppError } from '../errors.ts';
import type { Answer, Exchange, Pipeline } from './pipeline.ts';
import type { ClientLink, LeaseHandler, LeaseRoutePath } from './lease-api.ts';
import {
  declaredLength,
  jsonBody,
  lingerAfterAnswer,
  type BodyReader,
  type BodySource,
} from './body.ts';
import {
  BODY_TIMEOUT_MS,
  IMPORT_PATH,
  LEASE_BODY_LIMIT,
  LEASE_BODY_TIMEOUT_MS,
  STREAMED_PATH,
  bodyLimitFor,
} from './limits.ts';

/** The admin router: Hono's `fetch`, given the request's Exchange as its env. Errors are thrown. */
export interface Router {
  fetch(request: Request, ex: Exchange): Response | Promise<Response>;
}

export interface DispatchDeps {
  pipeline: Pipeline;
  /** The client lease routes by path (http/lease-api.ts): POST only, no token. */
  lease: Record<LeaseRoutePath, LeaseHandler>;
  router: Router;
  /** Reads every body: its cap, the budget of bytes held and a deadline (http/body.ts). */
  bodies: BodyReader;
  /** How long a body may take to arrive, ms (defaults in http/limits.ts). */
  timeouts?: { leaseBodyMs?: number | undefined; bodyMs?: number | undefined } | undefined;
}

export interface Dispatch {
  /** The server's node:http request listener. */
  serveNode(req: IncomingMessage, res: ServerResponse): void;
  /** The WHATWG face: a Request in, its Response out (app.request(), app.fetch()). */
  fetch(request: Request): Promise<Response>;
}

const EXCHANGE = Symbol('exchange');
type WithExchange = IncomingMessage & { [EXCHANGE]?: Exchange };

/**
 * Makes the two ways in of one app over one pipeline. Bodies: the lease routes' capped at
 * LEASE_BODY_LIMIT, the bulk import's at IMPORT_BODY_LIMIT (one at a time: a second gets 503
 * `busy`, Retry-After 5 s), every other at BODY_LIMIT (http/limits.ts); past the cap 413
 * `payload_too_large`, past the budget 503 `busy`, too slow 408 `request_timeout`, an HTTP/1.1
 * request without Host 400 `invalid_request`: each answered with `Connection: close`.
 */
export function createDispatch({
  pipeline,
  lease,
  router,
  bodies,
  timeouts,
}: DispatchDeps): Dispatch {
  const leaseRoutes = new Map<string, LeaseHandler>(Object.entries(lease));
  const leaseBodyMs = timeouts?.leaseBodyMs ?? LEASE_BODY_TIMEOUT_MS;
  const bodyMs = timeouts?.bodyMs ?? BODY_TIMEOUT_MS;
  let importing = false;

  /**
   * The lease route a request is for, if any: POST on its path. A path with percent-escapes is
   * matched decoded, as the router matches its own routes (only on a miss: never on the grant path).
   */
  function leaseRoute(method: string | undefined, path: string): LeaseHandler | undefined {
    if (method !== 'POST') return undefined;
    const handler = leaseRoutes.get(path);
    if (handler !== undefined || !path.includes('%')) return handler;
    try {
      return leaseRoutes.get(decodeURI(path));
    } catch {
      return undefined;
    }
  }

  /** A lease route's answer from its body bytes: handled, or the envelope of what failed. */
  function serveLease(
    ex: Exchange,
    handler: LeaseHandler,
    raw: Uint8Array | undefined,
    reply: (a: Answer) => void,
    link: ClientLink,
  ): void {
    let body: unknown;
    try {
      body = jsonBody(raw);
    } catch (err) {
      return reply(pipeline.failure(ex, err));
    }
    handler(body, link).then(
      (r) => reply(pipeline.json(ex, r.status, r.body)),
      (err) => reply(pipeline.failure(ex, err)),
    );
  }

  /** Routes a request whose body (if any) is in `ex.body`; its answer gets the policy's headers. */
  async function route(request: Request, ex: Exchange): Promise<Response> {
    let res: Response;
    try {
      res = await router.fetch(request, ex);
    } catch (err) {
      return toResponse(ex, pipeline.failure(ex, err), request.method);
    }
    const h = pipeline.headers(ex);
    for (const k in h) res.headers.set(k, h[k]!);
    pipeline.end(ex, res.status);
    return res;
  }

  function toResponse(ex: Exchange, a: Answer, method: string): Response {
    pipeline.end(ex, a.status);
    return new Response(method === 'HEAD' ? null : a.text, {
      status: a.status,
      headers: a.headers,
    });
  }

  // ---- node:http ----

  function writeNode(req: IncomingMessage, res: ServerResponse, ex: Exchange, a: Answer): void {
    // A body not read whole: closing tells the client to stop sending it; what it still sends is
    // read and dropped first, so it reads this answer (lingering close).
    if (a.close) lingerAfterAnswer(req);
    res.writeHead(a.status, a.headers);
    res.end(a.text);
    pipeline.end(ex, a.status);
  }

  /**
   * A request refused before its body was read (over the cap or the budget, too slow, no Host, a
   * second bulk import): the envelope with `Connection: close` and a lingering close.
   */
  function refuse(req: IncomingMessage, res: ServerResponse, ex: Exchange, err: AppError): void {
    if (res.headersSent || res.destroyed) return;
    writeNode(req, res, ex, pipeline.failure(ex, err, true));
  }

  // The adapter is only a bridge to the router here: it calls `route` with the request's Exchange.
  // Made on the first request it serves: making it replaces the global Request and Response with
  // its lighter ones, which an app only called through fetch() (tests) has no use for.
  let adapting: Exchange | undefined;
  let viaAdapter: ReturnType<typeof getRequestListener> | undefined;
  const makeAdapter = () =>
    getRequestListener(
      (request, env) => route(request, ((env as HttpBindings).incoming as WithExchange)[EXCHANGE]!),
      {
        // HTTP/1.0 has no Host header: such a request is served (the app routes on the path only).
        hostname: 'localhost',
        // What the adapter cannot turn into a Request (a Host header that is no host, `GET *`): the
        // envelope, not an empty 400. It is called at once, inside toRouter() (so `adapting` is the
        // request's Exchange). Anything else thrown here is our bug: failure() logs it.
        errorHandler: (err) => {
          const ex = adapting ?? pipeline.begin('-', '-', undefined);
          return toResponse(
            ex,
            pipeline.failure(
              ex,
              err instanceof RequestError
                ? new AppError('invalid_request', `the request cannot be read: ${err.message}`)
                : err,
            ),
            ex.method,
          );
        },
      },
    );

  function toRouter(req: WithExchange, res: ServerResponse, ex: Exchange): void {
    req[EXCHANGE] = ex;
    adapting = ex;
    void (viaAdapter ??= makeAdapter())(req, res);
    adapting = undefined;
  }

  /**
   * Every request but the lease routes: the body is read here, under its route's cap, the budget
   * and a deadline, and handed to the router in the Exchange. The streamed sync import reads its
   * own (its route enforces the bundle cap while it arrives).
   */
  function readThenRoute(req: IncomingMessage, res: ServerResponse, ex: Exchange): void {
    // No body (none declared, or an empty one): nothing to read.
    const declared = declaredLength(req.headers['content-length']);
    if (
      req.headers['transfer-encoding'] === undefined &&
      (declared === undefined || declared === 0)
    )
      return toRouter(req, res, ex);
    if (ex.path === STREAMED_PATH) return toRouter(req, res, ex);
    const isImport = ex.path === IMPORT_PATH && req.method === 'POST';
    if (isImport) {
      // Up to 64 MiB each, parsed and validated whole: one at a time.
      if (importing) {
        return refuse(
          req,
          res,
          ex,
          new AppError('busy', 'another bulk import is in progress; retry when it is done', {
            retry_after_seconds: 5,
            reason: 'import_in_progress',
          }),
        );
      }
      importing = true;
      res.once('close', () => (importing = false));
    }
    bodies.read(req, bodyLimitFor(ex.path), bodyMs, !isImport, (err, body) => {
      if (err !== null) return refuse(req, res, ex, err);
      if (body === undefined) return;
      if (!isImport) {
        // The router holds the body until it has answered.
        bodies.hold(body.length);
        res.once('close', () => bodies.release(body.length));
      }
      ex.body = body;
      toRouter(req, res, ex);
    });
  }

  function serveNode(req: IncomingMessage, res: ServerResponse): void {
    const ex = pipeline.begin(req.method ?? '-', req.url ?? '', req.headers['x-request-id']);
    // RFC 9112 3.2: an HTTP/1.1 request without Host is a 400 (node:http's own is an empty one).
    if (
      req.headers.host === undefined &&
      req.httpVersionMajor === 1 &&
      req.httpVersionMinor === 1
    ) {
      return refuse(
        req,
        res,
        ex,
        new AppError('invalid_request', 'an HTTP/1.1 request needs a Host header', {
          issues: [{ path: 'host', message: 'missing' }],
        }),
      );
    }
    const handler = leaseRoute(req.method, ex.path);
    if (handler === undefined) return readThenRoute(req, res, ex);
    bodies.read(req, LEASE_BODY_LIMIT, leaseBodyMs, true, (err, raw) => {
      if (err !== null) return refuse(req, res, ex, err);
      // The client went away mid-body: nobody to answer.
      if (raw === undefined) return;
      serveLease(ex, handler, raw, (a) => writeNode(req, res, ex, a), res);
    });
  }

  // ---- WHATWG ----

  /** A WHATWG body read whole by the same reader, under the same cap (not budgeted: in process). */
  function readWebBody(request: Request, path: string): Promise<Uint8Array> {
    const stream = Readable.fromWeb(request.body as import('node:stream/web').ReadableStream);
    const source: BodySource = {
      headers: { 'content-length': request.headers.get('content-length') ?? undefined },
      on: (event: string, listener: (...args: any[]) => void) => stream.on(event, listener),
    };
    return new Promise((resolve, reject) =>
      bodies.read(source, bodyLimitFor(path), bodyMs, false, (err, body) => {
        if (err === null && body !== undefined) return resolve(body);
        stream.destroy();
        reject(err ?? new AppError('invalid_request', 'the request body cannot be read'));
      }),
    );
  }

  async function fetch(request: Request): Promise<Response> {
    const url = request.url;
    // The request target as a server sees it: the path and query after the origin.
    const ex = pipeline.begin(
      request.method,
      url.slice(url.indexOf('/', url.indexOf(':') + 3)),
      request.headers.get('x-request-id'),
    );
    if (request.body !== null && ex.path !== STREAMED_PATH) {
      try {
        ex.body = await readWebBody(request, ex.path);
      } catch (err) {
        return toResponse(ex, pipeline.failure(ex, err, true), request.method);
      }
    }
    const handler = leaseRoute(request.method, ex.path);
    if (handler === undefined) return route(request, ex);
    return new Promise((resolve) =>
      serveLease(
        ex,
        handler,
        ex.body,
        (a) => resolve(toResponse(ex, a, request.method)),
        request.signal,
      ),
    );
  }

  return { serveNode, fetch };
}
