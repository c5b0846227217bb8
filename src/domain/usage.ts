import type { Clock } from '../clock.ts';
import type { Store } from '../storage/store.ts';
import type { Entitlement } from './types.ts';
import { DAY_MS } from './types.ts';

export interface UsageReport {
  seats: { total: number | null; assigned: number; active_30d: number };
  leases: { active: number; peak_30d: number };
  activity: { grants_30d: number; denials_30d: number; unique_users_30d: number };
}

const NAMED = new Set(['per_user', 'per_machine']);

/** Usage reports, computed from the lease event log (so they are the same after a restart). */
export function createUsageService({ store, clock }: { store: Store; clock: Clock }) {
  return {
    /**
     * The 30-day report. For per_user and per_machine a seat is a named assignment; for concurrent
     * it is a lease in force, so `assigned` is the leases in force. `peak_30d` is the most leases
     * held at once in the window (never below the leases in force now).
     */
    report(e: Entitlement): UsageReport {
      const now = clock.now();
      const from = now - 30 * DAY_MS;
      const w = store.usage.window(e.id, from, now + 1);
      const active = store.leases.liveCount(e.id, now);
      const named = NAMED.has(e.policy.type);
      return {
        seats: {
          total: e.policy.max_seats ?? null,
          assigned: named ? store.leases.counters(e.id).seatsAssigned : active,
          active_30d: named ? store.usage.activeSeats(e.id, from, now + 1) : w.uniqueSubjects,
        },
        leases: { active, peak_30d: Math.max(w.peak, active) },
        activity: {
          grants_30d: w.grants,
          denials_30d: w.denials,
          unique_users_30d: w.uniqueSubjects,
        },
      };
    },

    /** One row per UTC day with activity, for compliance reports (CSV). */
    daily(e: Entitlement, days: number) {
      const now = clock.now();
      const from = Math.floor((now - (days - 1) * DAY_MS) / DAY_MS) * DAY_MS;
      return store.usage.daily(e.id, from, now + 1);
    },
  };
}

export type UsageService = ReturnType<typeof createUsageService>;

const CSV_HEADER = [
  'date',
  'entitlement_id',
  'tenant_id',
  'product_id',
  'grants',
  'renewals',
  'releases',
  'denials',
  'peak_concurrent',
  'unique_subjects',
];

/** CSV (RFC 4180) of daily usage; ids are quoted when they hold a comma, quote or line break. */
export function usageCsv(e: Entitlement, rows: ReturnType<UsageService['daily']>): string {
  const cell = (v: string | number) => {
    const s = String(v);
    // A leading = + - @ would be a formula in a spreadsheet: prefix it so it stays text.
    const safe = /^[=+\-@]/.test(s) ? `'${s}` : s;
    return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
  };
  const lines = [CSV_HEADER.join(',')];
  for (const r of rows) {
    lines.push(
      [
        new Date(r.day).toISOString().slice(0, 10),
        e.id,
        e.tenantId,
        e.productId,
        r.grants,
        r.renewals,
        r.releases,
        r.denials,
        r.peak,
        r.uniqueSubjects,
      ]
        .map(cell)
        .join(','),
    );
  }
  return `${lines.join('\r\n')}\r\n`;
}
