import type { Hono } from 'hono';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import { AppError } from '../../errors.ts';

/** Liveness and readiness; no authentication, no details that help an attacker. */
export function registerHealthRoutes(app: Hono<AppEnv>, { store, services, isDraining }: RouteDeps): void {
  app.get('/healthz', (c) => c.json({ status: 'ok' }));

  app.get('/readyz', (c) => {
    if (isDraining()) return c.json({ status: 'draining' }, 503);
    try {
      store.audit.head();
    } catch {
      throw new AppError('internal', 'the database is not answering');
    }
    // A suspect clock refuses every lease: not ready for clients until it is fixed.
    if (services.timeGuard.status().suspect) return c.json({ status: 'clock_suspect' }, 503);
    return c.json({ status: 'ready' });
  });
}
