import type { Clock } from '../clock.ts';
import type { Store } from './store.ts';
import type { DayStats, Entitlement, QuotaState } from './types.ts';
import { DAY_MS, hasNamedSeats } from './types.ts';
import { quotaDayUses, quotaStates, type QuotaDayUse } from './quota-rules.ts';

/** The 30-day usage of one entitlement (see report). Counts, no times. */
export interface UsageReport {
  seats: {
    /** max_seats, or null when the policy has no limit. */
    total: number | null;
    assigned: number;
    active30d: number;
  };
  /** borrowed: borrowed leases in force (shown when the policy borrows or some are). */
  leases: { active: number; peak30d: number; borrowed?: number };
  /**
   * overdraftGrants30d: grants past max_seats (the vendor's true-up), shown when the policy has
   * overdraft_seats or there were some; borrows30d likewise for borrowing.
   */
  activity: {
    grants30d: number;
    denials30d: number;
    uniqueUsers30d: number;
    overdraftGrants30d?: number;
    borrows30d?: number;
  };
  /** One per quota of the policy, now (none: []). */
  quotas: QuotaState[];
}

/** A day of the daily report: its lease figures, and each quota of the policy by name. */
export type { QuotaDayUse } from './quota-rules.ts';

export interface DailyUsage extends DayStats {
  quotas: Record<string, QuotaDayUse>;
}

const NO_LEASE_ACTIVITY = {
  grants: 0,
  renewals: 0,
  releases: 0,
  denials: 0,
  peak: 0,
  uniqueSubjects: 0,
  overdraftGrants: 0,
  borrows: 0,
} as const;

/** How far back the usage report looks. */
const REPORT_WINDOW_MS = 30 * DAY_MS;

/** Usage reports, computed from the lease event log (so they are the same after a restart). */
export function createUsageService({ store, clock }: { store: Store; clock: Clock }) {
  return {
    /**
     * The 30-day report. For per_user and per_machine a seat is a named assignment; for concurrent
     * it is a lease in force, so `assigned` is the leases in force. `peak30d` is the most leases
     * held at once in the window (never below the leases in force now). Throws nothing.
     */
    report(e: Entitlement): UsageReport {
      const now = clock.now();
      const from = now - REPORT_WINDOW_MS;
      const w = store.usage.window(e.id, from, now + 1);
      const active = store.leases.liveCount(e.id, now);
      const named = hasNamedSeats(e.policy.type);
      const overdraft = (e.policy.overdraft_seats ?? 0) > 0;
      const borrows = (e.policy.max_borrow_hours ?? 0) > 0;
      return {
        seats: {
          total: e.policy.max_seats ?? null,
          assigned: named ? store.leases.counters(e.id).seatsAssigned : active,
          active30d: named ? store.usage.activeSeats(e.id, from, now + 1) : w.uniqueSubjects,
        },
        leases: {
          active,
          peak30d: Math.max(w.peak, active),
          ...(borrows || w.borrows > 0
            ? { borrowed: store.leases.liveBorrowedCount(e.id, now) }
            : {}),
        },
        activity: {
          grants30d: w.grants,
          denials30d: w.denials,
          uniqueUsers30d: w.uniqueSubjects,
          ...(overdraft || w.overdraftGrants > 0 ? { overdraftGrants30d: w.overdraftGrants } : {}),
          ...(borrows || w.borrows > 0 ? { borrows30d: w.borrows } : {}),
        },
        quotas: quotaStates(e, store.installations.counts(e.id)),
      };
    },

    /**
     * One row per UTC day with activity (leases, or installs and removals of a quota) over the last
     * `days` days (today included), oldest first, for compliance reports (usageCsv in views.ts).
     * A quota's units in use at the end of a day are today's count less the changes since (every
     * install and removal is logged). Throws nothing.
     */
    daily(e: Entitlement, days: number): DailyUsage[] {
      const now = clock.now();
      const from = Math.floor((now - (days - 1) * DAY_MS) / DAY_MS) * DAY_MS;
      const byDay = new Map<number, DailyUsage>();
      for (const d of store.usage.daily(e.id, from, now + 1))
        byDay.set(d.day, { ...d, quotas: {} });
      if (e.policy.quotas !== undefined) {
        const changes = store.installations.daily(e.id, from, now + 1);
        for (const c of changes)
          if (!byDay.has(c.day)) byDay.set(c.day, { ...NO_LEASE_ACTIVITY, day: c.day, quotas: {} });
        const uses = quotaDayUses(quotaStates(e, store.installations.counts(e.id)), changes, [
          ...byDay.keys(),
        ]);
        for (const [day, quotas] of uses) byDay.get(day)!.quotas = quotas;
      }
      return [...byDay.values()].sort((a, b) => a.day - b.day);
    },
  };
}

export type UsageService = ReturnType<typeof createUsageService>;
