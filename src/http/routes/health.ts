import type { Hono } from 'hono';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import { AppError } from '../../errors.ts';

/** Liveness and readiness; no authentication, no details that help an attacker. */
export function registerHealthRoutes(
  app: Hono<AppEnv>,
  { store, services, isDraining, metrics, storage }: RouteDeps,
): void {
  app.get('/healthz', (c) => c.json({ status: 'ok' }));

  app.get('/readyz', (c) => {
    if (isDraining()) return c.json({ status: 'draining' }, 503);
    try {
      services.audit.head();
    } catch (err) {
      // Storage that fails even to read (an I/O error) is an episode too, not a 500.
      const e = storage.health.failed(err);
      if (e) return c.json({ status: storage.health.condition() }, 503);
      throw new AppError('internal', 'the database is not answering');
    }
    // Writes fail (full disk: storage_full; read-only or failing: storage_unavailable) until a
    // probe commits again; asked here, the probe runs (at most every 250 ms).
    const condition = storage.health.check();
    if (condition !== 'ok') return c.json({ status: condition }, 503);
    // A suspect clock refuses the vendor's (bundle-managed) entitlements only: not ready while it
    // refuses something; with none on the server, ready, and saying so.
    if (services.timeGuard.status().suspect) {
      return services.timeGuard.guardsAnything()
        ? c.json({ status: 'clock_suspect' }, 503)
        : c.json({ status: 'ready', clock: 'suspect' });
    }
    return c.json({ status: 'ready' });
  });

  // Aggregates only: no tenant, subject or product names, so it can be scraped without a token.
  app.get('/metrics', (c) => {
    const t = store.entitlements.totals();
    const body = metrics.render({
      bpls_entitlements: { help: 'Entitlements on this server.', value: t.entitlements },
      bpls_leases_active: {
        help: 'Active lease rows (expired ones count until the sweep marks them).',
        value: t.leases,
      },
      bpls_seats_assigned: { help: 'Named seats assigned.', value: t.seats },
      bpls_lease_queue_waiting: {
        help: 'Lease requests waiting for a seat (wait_seconds), on all entitlements.',
        value: services.leases.queued(),
      },
      bpls_clock_suspect: {
        help: '1 while the clock reads over an hour behind the high-water mark (bundle-managed entitlements refuse grants and renewals).',
        value: services.timeGuard.status().suspect ? 1 : 0,
      },
      bpls_storage_writable: {
        help: '1 while writes succeed; 0 from a write refused for a full or read-only disk until a probe commits again.',
        value: storage.health.condition() === 'ok' ? 1 : 0,
      },
      bpls_storage_full: {
        help: '1 while writes fail because the disk holding the data directory is full.',
        value: storage.health.condition() === 'storage_full' ? 1 : 0,
      },
      bpls_storage_refused_writes: {
        help: 'Writes refused since start because the storage was full, read-only or failing.',
        value: storage.health.failedWrites(),
      },
      ...(storage.checkpointer ? checkpointGauges(storage.checkpointer) : {}),
    });
    return c.body(body, 200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' });
  });
}

function checkpointGauges(
  c: NonNullable<RouteDeps['storage']['checkpointer']>,
): Record<string, { help: string; value: number }> {
  const st = c.stats();
  return {
    bpls_wal_bytes: {
      help: 'Size of the write-ahead log file, bytes (checkpointed off the request path).',
      value: c.walBytes(),
    },
    bpls_wal_checkpoint_thread: {
      help: '1 while WAL checkpoints run on their own thread (started once the WAL passes 1 MiB); 0 before, or after it failed (logged).',
      value: st.running ? 1 : 0,
    },
    bpls_wal_checkpoints_serving: {
      help: 'WAL checkpoints run on the serving thread (the last frames before the WAL restarts) since start.',
      value: st.serving,
    },
    bpls_wal_checkpoint_serving_max_ms: {
      help: 'The longest of those, milliseconds.',
      value: Math.round(st.maxServingMs * 10) / 10,
    },
    bpls_wal_truncates: {
      help: 'WAL truncations (at start, after a storage episode, past the bound) since start.',
      value: st.truncates,
    },
  };
}
