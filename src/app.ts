import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { Clock } from './clock.ts';
import { AppError, toEnvelope } from './errors.ts';
import type { Logger } from './log.ts';
import type { Services } from './context.ts';
import type { Store } from './storage/store.ts';
import type { ServerInfo } from './data-dir.ts';
import type { AppEnv } from './http/types.ts';
import type { RouteKey } from './http/permissions.ts';
import {
  errorAnswer,
  limitBody,
  requestId,
  requestLog,
  requirePermission,
} from './http/middleware.ts';
import { registerHealthRoutes } from './http/routes/health.ts';
import { registerEntitlementRoutes } from './http/routes/entitlements.ts';
import { registerTokenRoutes } from './http/routes/tokens.ts';
import { registerLeaseRoutes } from './http/routes/leases.ts';
import { registerSeatRoutes } from './http/routes/seats.ts';
import { registerSyncRoutes } from './http/routes/sync.ts';
import { registerAuditRoutes } from './http/routes/audit.ts';
import { createMetrics, type Metrics } from './http/metrics.ts';
import {
  BODY_LIMIT,
  IMPORT_BODY_LIMIT,
  LEASE_BODY_LIMIT,
  STREAMED_PATH,
  bodyLimitFor,
} from './http/limits.ts';
import { registerAdminPage } from './admin/page.tsx';
import { createStorageHealth } from './storage/health.ts';
import type { StorageUpkeep } from './storage/upkeep.ts';
import * as path from 'node:path';

export interface AppDeps {
  services: Services;
  store: Store;
  clock: Clock;
  info: ServerInfo;
  log: Logger;
  /** True once SIGTERM arrived: /readyz says so, so a balancer stops sending. */
  isDraining?: () => boolean;
  /** Request counters, shared with the server's direct lease path; the app makes its own without. */
  metrics?: Metrics;
  /** The server's storage upkeep (episodes, WAL); without it the app tracks episodes itself, with no checkpoint thread. */
  storage?: Pick<StorageUpkeep, 'health'> & {
    checkpointer?: Pick<StorageUpkeep['checkpointer'], 'walBytes' | 'stats'>;
  };
}

export interface RouteDeps extends AppDeps {
  metrics: Metrics;
  storage: NonNullable<AppDeps['storage']>;
  auth: (route: RouteKey) => ReturnType<typeof requirePermission>;
  isDraining: () => boolean;
}

/** The Hono app. It never listens: startServer() does, tests call app.request(). */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const routeDeps: RouteDeps = {
    ...deps,
    metrics: deps.metrics ?? createMetrics(),
    isDraining: deps.isDraining ?? (() => false),
    storage: deps.storage ?? {
      health: createStorageHealth({
        db: deps.store.db,
        dir: path.dirname(deps.store.db.name),
        log: deps.log,
      }),
    },
    auth: (route) => requirePermission(() => deps.services.apiTokens, route),
  };

  app.use('*', requestId());
  app.use('*', requestLog(deps.log, routeDeps.metrics));
  // Per-route caps (http/limits.ts). A sync bundle is streamed to disk by its route, which enforces
  // the bundle size cap itself.
  const limits = new Map(
    [LEASE_BODY_LIMIT, BODY_LIMIT, IMPORT_BODY_LIMIT].map((n) => [n, limitBody(n)]),
  );
  app.use('*', (c, next) =>
    c.req.path === STREAMED_PATH ? next() : limits.get(bodyLimitFor(c.req.path))!(c, next),
  );

  registerHealthRoutes(app, routeDeps);
  registerEntitlementRoutes(app, routeDeps);
  registerTokenRoutes(app, routeDeps);
  registerLeaseRoutes(app, routeDeps);
  registerSeatRoutes(app, routeDeps);
  registerSyncRoutes(app, routeDeps);
  registerAuditRoutes(app, routeDeps);
  registerAdminPage(app);

  app.notFound((c) => {
    const err = new AppError('not_found', `no route ${c.req.method} ${c.req.path.slice(0, 200)}`);
    return c.json(toEnvelope(err, c.get('requestId')), 404);
  });

  app.onError((err, c) => {
    // Hono's own errors (malformed input, limits) are mapped to our codes first.
    const mapped = err instanceof HTTPException ? fromHttpException(err) : err;
    const a = errorAnswer(mapped, c.get('requestId'), deps.log, routeDeps.storage.health);
    if (a.close) c.header('Connection', 'close');
    if (a.retryAfter !== undefined) c.header('Retry-After', String(a.retryAfter));
    return c.json(a.body, a.status);
  });

  return app;
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
