import type { Hono } from 'hono';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import { AppError } from '../../errors.ts';

/** Liveness and readiness; no authentication, no details that help an attacker. */
export function registerHealthRoutes(app: Hono<AppEnv>, { store, isDraining }: RouteDeps): void {
  app.get('/healthz', (c) => c.json({ status: 'ok' }));

  app.get('/readyz', (c) => {
    if (isDraining()) return c.json({ status: 'draining' }, 503);
    try {
      store.audit.head();
    } catch {
      throw new AppError('internal', 'the database is not answering');
    }
    return c.json({ status: 'ready' });
  });
}
