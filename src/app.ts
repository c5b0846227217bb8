import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from './clock.ts';
import { AppError } from './errors.ts';
import type { Logger } from './log.ts';
import type { Services } from './context.ts';
import type { AnyStore } from './storage/store.ts';
import type { ServerInfo } from './data-dir.ts';
import type { AppEnv } from './http/types.ts';
import type { RouteKey } from './http/permissions.ts';
import { requirePermission } from './http/middleware.ts';
import { createPipeline, type HeaderPolicy, type Pipeline } from './http/pipeline.ts';
import { createDispatch } from './http/dispatch.ts';
import { createLeaseApi } from './http/lease-api.ts';
import { createBodyReader, type BodyReader } from './http/body.ts';
import { DEFAULT_BODY_BUDGET } from './http/limits.ts';
import { registerHealthRoutes } from './http/routes/health.ts';
import { registerEntitlementRoutes } from './http/routes/entitlements.ts';
import { registerTokenRoutes } from './http/routes/tokens.ts';
import { registerLeaseRoutes } from './http/routes/leases.ts';
import { registerSeatRoutes } from './http/routes/seats.ts';
import { registerInstallationRoutes } from './http/routes/installations.ts';
import { registerSyncRoutes } from './http/routes/sync.ts';
import { registerAuditRoutes } from './http/routes/audit.ts';
import { registerTemplateRoutes } from './http/routes/template/register.ts';
import { registerOpenApiRoute } from './http/routes/openapi.ts';
import { createMetrics, type Metrics } from './http/metrics.ts';
import { registerAdminPage } from './admin/page.tsx';
import { storageHealthOf, type StorageUpkeep } from './storage/upkeep.ts';

export interface AppDeps {
  services: Services;
  store: AnyStore;
  clock: Clock;
  info: ServerInfo;
  log: Logger;
  /** True once SIGTERM arrived: /readyz says so, so a balancer stops sending. */
  isDraining?: () => boolean;
  /** Request counters: the pipeline counts every answer, /metrics shows them (made if absent). */
  metrics?: Metrics;
  /**
   * The server's storage upkeep (episodes, WAL); without it the app tracks episodes itself, with
   * no checkpoint thread.
   */
  storage?: Pick<StorageUpkeep, 'health'> & {
    checkpointer?:
      Pick<NonNullable<StorageUpkeep['checkpointer']>, 'walBytes' | 'stats'> | undefined;
  };
  /** The server's body reader (its budget); without it the app makes one for unbudgeted reads. */
  bodies?: BodyReader;
  /** How long bodies may take to arrive, ms (http/limits.ts has the defaults). */
  timeouts?: { leaseBodyMs?: number | undefined; bodyMs?: number | undefined };
  /** The header policy (http/pipeline.ts answerHeaders); a test may add a probe header to it. */
  headers?: HeaderPolicy;
}

export interface RouteDeps extends AppDeps {
  metrics: Metrics;
  storage: NonNullable<AppDeps['storage']>;
  auth: (route: RouteKey) => ReturnType<typeof requirePermission>;
  isDraining: () => boolean;
}

/**
 * The HTTP application: every route behind one request pipeline (http/pipeline.ts). It never
 * listens: startServer() hands `serveNode` to node:http; tests call `request()` as Hono's.
 */
export interface App {
  /** The WHATWG face: a Request in, its Response out, through the pipeline. */
  fetch(request: Request): Promise<Response>;
  /** As Hono's app.request(): a path (or URL, or Request) and its init. */
  request(input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** The server's node:http listener (lease routes served straight, the rest routed). */
  serveNode(req: IncomingMessage, res: ServerResponse): void;
  /** The pipeline, for answers written outside a request (node:http's protocol errors). */
  pipeline: Pipeline;
  /** Every route, as method and path (`:id` for parameters): the lease routes and the router's. */
  routes: ReadonlyArray<{ method: string; path: string }>;
}

/**
 * Builds the app: the Hono router with every admin route (no middleware), the client lease routes,
 * and the pipeline and dispatch in front of both. Opens nothing and starts nothing: the caller owns
 * the store and the server.
 */
export function createApp(deps: AppDeps): App {
  const router = new Hono<AppEnv>();
  const routeDeps: RouteDeps = {
    ...deps,
    metrics: deps.metrics ?? createMetrics(),
    isDraining: deps.isDraining ?? (() => false),
    storage: deps.storage ?? {
      health: storageHealthOf(deps.store, deps.log),
    },
    auth: (route) => requirePermission(() => deps.services.apiTokens, route),
  };

  // The router routes and handles, nothing more: no middleware. Request id, body cap, log line,
  // metrics, headers and the error envelope are the pipeline's, around it (http/dispatch.ts).
  registerHealthRoutes(router, routeDeps);
  registerEntitlementRoutes(router, routeDeps);
  registerTokenRoutes(router, routeDeps);
  registerLeaseRoutes(router, routeDeps);
  registerSeatRoutes(router, routeDeps);
  registerInstallationRoutes(router, routeDeps);
  registerSyncRoutes(router, routeDeps);
  registerAuditRoutes(router, routeDeps);
  registerTemplateRoutes(router, routeDeps);
  registerOpenApiRoute(router);
  registerAdminPage(router);

  // Not found, and every error, are thrown to the pipeline, which answers them with the envelope.
  router.notFound((c) => {
    throw new AppError('not_found', `no route ${c.req.method} ${c.req.path.slice(0, 200)}`);
  });
  router.onError((err) => {
    // Hono's own errors (malformed input, limits) are mapped to our codes first.
    throw err instanceof HTTPException ? fromHttpException(err) : err;
  });

  const pipeline = createPipeline({
    log: deps.log,
    metrics: routeDeps.metrics,
    storage: routeDeps.storage.health,
    headers: deps.headers,
  });
  const lease = createLeaseApi(deps.services);
  const dispatch = createDispatch({
    pipeline,
    lease,
    router: { fetch: (request, ex) => router.fetch(request, ex) },
    bodies: deps.bodies ?? createBodyReader(DEFAULT_BODY_BUDGET),
    timeouts: deps.timeouts,
  });

  return {
    fetch: dispatch.fetch,
    request(input, init) {
      if (input instanceof Request) return dispatch.fetch(init ? new Request(input, init) : input);
      const s = input.toString();
      const url = /^https?:\/\//.test(s)
        ? s
        : `http://localhost${s.startsWith('/') ? '' : '/'}${s}`;
      return dispatch.fetch(new Request(url, init));
    },
    serveNode: dispatch.serveNode,
    pipeline,
    routes: [
      ...Object.keys(lease).map((p) => ({ method: 'POST', path: p })),
      ...router.routes.map((r) => ({ method: r.method, path: r.path })),
    ],
  };
}
function fromHttpException(err: HTTPException): AppError {
  const code =
    err.status === 413
      ? 'payload_too_large'
      : err.status === 401
        ? 'unauthorized'
        : err.status === 404
          ? 'not_found'
          : err.status < 500
            ? 'invalid_request'
            : 'internal';
  return new AppError(
    code,
    code === 'internal' ? 'internal error' : err.message || 'invalid request',
  );
}
