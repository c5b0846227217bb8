import type { Db } from './db.ts';
import type { DayStats, WindowStats } from '../domain/types.ts';
import type { UsageRepo } from '../domain/store.ts';

const DAY = 86_400_000;
// Grants past max_seats and borrows started, from the event flags (EVENT_OVERDRAFT 1, EVENT_BORROWED 2).
const FLAG_COUNTS = `count(*) FILTER (WHERE kind = 'grant' AND flags & 1 <> 0) AS overdraft_grants, count(*) FILTER (WHERE flags & 2 <> 0) AS borrows`;

interface DayRow {
  day: number;
  grants: number;
  renewals: number;
  releases: number;
  denials: number;
  peak: number | null;
  unique_subjects: number;
  overdraft_grants: number | null;
  borrows: number | null;
}

/**
 * All SQL behind usage reports: read from the lease event log, so figures survive restarts. The log's
 * subject_id is the subject's canonical key (migration 0007), so distinct counts are per subject
 * however its id was spelt.
 */
export function createUsageRepo(db: Db): UsageRepo {
  const window = db.prepare<
    [string, number, number],
    {
      grants: number | null;
      renewals: number | null;
      releases: number | null;
      denials: number | null;
      peak: number | null;
      overdraft_grants: number | null;
      borrows: number | null;
    }
  >(
    `SELECT count(*) FILTER (WHERE kind = 'grant') AS grants, count(*) FILTER (WHERE kind = 'renew') AS renewals, count(*) FILTER (WHERE kind = 'release') AS releases,
            count(*) FILTER (WHERE kind = 'deny') AS denials, max(active_after) AS peak, ${FLAG_COUNTS}
       FROM lease_events WHERE entitlement_id = ? AND at >= ? AND at < ?`,
  );
  const unique = db.prepare<[string, number, number], { n: number }>(
    `SELECT count(*) AS n FROM (SELECT DISTINCT subject_type, subject_id FROM lease_events
      WHERE entitlement_id = ? AND at >= ? AND at < ? AND kind IN ('grant', 'renew')) AS s`,
  );
  const activeSeats = db.prepare<[number, number, string], { n: number }>(
    `SELECT count(*) AS n FROM seats s WHERE EXISTS (
       SELECT 1 FROM lease_events e WHERE e.entitlement_id = s.entitlement_id AND e.at >= ? AND e.at < ?
         AND e.kind IN ('grant', 'renew') AND e.subject_type = s.subject_type AND e.subject_id = s.subject_key)
     AND s.entitlement_id = ?`,
  );
  const daily = db.prepare<[string, number, number], DayRow>(
    `SELECT (at / ${DAY}) * ${DAY} AS day, count(*) FILTER (WHERE kind = 'grant') AS grants, count(*) FILTER (WHERE kind = 'renew') AS renewals,
            count(*) FILTER (WHERE kind = 'release') AS releases, count(*) FILTER (WHERE kind = 'deny') AS denials, max(active_after) AS peak,
            ${FLAG_COUNTS},
            count(DISTINCT CASE WHEN kind IN ('grant', 'renew') THEN subject_type || ':' || subject_id END) AS unique_subjects
       FROM lease_events WHERE entitlement_id = ? AND at >= ? AND at < ? GROUP BY at / ${DAY} ORDER BY day`,
  );

  return {
    window(entitlementId: string, from: number, to: number): WindowStats {
      const w = window.get(entitlementId, from, to)!;
      return {
        grants: w.grants ?? 0,
        renewals: w.renewals ?? 0,
        releases: w.releases ?? 0,
        denials: w.denials ?? 0,
        peak: w.peak ?? 0,
        uniqueSubjects: unique.get(entitlementId, from, to)!.n,
        overdraftGrants: w.overdraft_grants ?? 0,
        borrows: w.borrows ?? 0,
      };
    },
    /** Seats whose holder leased or renewed in the window. */
    activeSeats(entitlementId: string, from: number, to: number): number {
      return activeSeats.get(from, to, entitlementId)!.n;
    },
    daily(entitlementId: string, from: number, to: number): DayStats[] {
      return daily.all(entitlementId, from, to).map((r) => ({
        day: r.day,
        grants: r.grants,
        renewals: r.renewals,
        releases: r.releases,
        denials: r.denials,
        peak: r.peak ?? 0,
        uniqueSubjects: r.unique_subjects,
        overdraftGrants: r.overdraft_grants ?? 0,
        borrows: r.borrows ?? 0,
      }));
    },
  };
}
