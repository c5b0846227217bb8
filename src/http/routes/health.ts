import type { Hono } from 'hono';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import { AppError } from '../../errors.ts';

/** Liveness and readiness; no authentication, no details that help an attacker. */
export function registerHealthRoutes(app: Hono<AppEnv>, { store, services, isDraining, metrics }: RouteDeps): void {
  app.get('/healthz', (c) => c.json({ status: 'ok' }));

  app.get('/readyz', (c) => {
    if (isDraining()) return c.json({ status: 'draining' }, 503);
    try {
      store.audit.head();
    } catch {
      throw new AppError('internal', 'the database is not answering');
    }
    // A suspect clock refuses the vendor's (bundle-managed) entitlements only: not ready while it
    // refuses something; with none on the server, ready, and saying so.
    if (services.timeGuard.status().suspect) {
      return services.timeGuard.guardsAnything() ? c.json({ status: 'clock_suspect' }, 503) : c.json({ status: 'ready', clock: 'suspect' });
    }
    return c.json({ status: 'ready' });
  });

  // Aggregates only: no tenant, subject or product names, so it can be scraped without a token.
  app.get('/metrics', (c) => {
    const t = store.entitlements.totals();
    const body = metrics.render({
      bpls_entitlements: { help: 'Entitlements on this server.', value: t.entitlements },
      bpls_leases_active: { help: 'Active lease rows (expired ones count until the sweep marks them).', value: t.leases },
      bpls_seats_assigned: { help: 'Named seats assigned.', value: t.seats },
      bpls_clock_suspect: { help: '1 while the clock reads over an hour behind the high-water mark (bundle-managed entitlements refuse grants and renewals).', value: services.timeGuard.status().suspect ? 1 : 0 },
    });
    return c.body(body, 200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' });
  });
}
