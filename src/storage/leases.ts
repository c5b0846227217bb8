import type { Db } from './db.ts';
import type {
  EntitlementCounters,
  Lease,
  LeaseEvent,
  LeaseState,
  ListedLease,
  Seat,
} from '../domain/types.ts';
import type { LeaseFilter, LeaseRepo, SeatRepo } from '../domain/store.ts';

interface LeaseRow {
  seq: number;
  id: string;
  entitlement_id: string;
  subject_type: string;
  subject_id: string;
  subject_key: string;
  features: string;
  granted_at: number;
  renewed_at: number;
  expires_at: number;
  state: LeaseState;
  ended_at: number | null;
  overdraft: number;
  borrowed: number;
}

const fromRow = (r: LeaseRow): Lease => ({
  seq: r.seq,
  id: r.id,
  entitlementId: r.entitlement_id,
  subjectType: r.subject_type,
  subjectId: r.subject_id,
  subjectKey: r.subject_key,
  features: JSON.parse(r.features) as string[],
  grantedAt: r.granted_at,
  renewedAt: r.renewed_at,
  expiresAt: r.expires_at,
  state: r.state,
  endedAt: r.ended_at,
  overdraft: r.overdraft === 1,
  borrowed: r.borrowed === 1,
});

/** All SQL about leases, their counters and their events. */
export function createLeaseRepo(db: Db): LeaseRepo {
  const insert =
    db.prepare(`INSERT INTO leases (id, entitlement_id, subject_type, subject_id, subject_key, features, granted_at, renewed_at, expires_at, state, overdraft, borrowed)
    VALUES (@id, @entitlement_id, @subject_type, @subject_id, @subject_key, @features, @granted_at, @renewed_at, @expires_at, 'active', @overdraft, @borrowed)`);
  const byId = db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE id = ?');
  const activeBySubject = db.prepare<[string, string, string], LeaseRow>(
    "SELECT * FROM leases WHERE entitlement_id = ? AND subject_type = ? AND subject_key = ? AND state = 'active'",
  );
  const refresh = db.prepare<[number, number, string, string]>(
    'UPDATE leases SET renewed_at = ?, expires_at = ?, features = ? WHERE id = ?',
  );
  const end = db.prepare<[LeaseState, number, string]>(
    "UPDATE leases SET state = ?, ended_at = ? WHERE id = ? AND state = 'active'",
  );
  const bumpActive = db.prepare<[string, number], { active_leases: number }>(
    `INSERT INTO entitlement_counters (entitlement_id, active_leases) VALUES (?, ?)
     ON CONFLICT (entitlement_id) DO UPDATE SET active_leases = entitlement_counters.active_leases + excluded.active_leases RETURNING active_leases`,
  );
  const borrow = db.prepare<[string]>('UPDATE leases SET borrowed = 1 WHERE id = ?');
  const pruneInstances = db.prepare<[number]>('DELETE FROM lease_instances WHERE expires_at <= ?');
  const upsertInstance = db.prepare<[string, string, number]>(
    `INSERT INTO lease_instances (lease_id, instance_id, expires_at) VALUES (?, ?, ?)
     ON CONFLICT (lease_id, instance_id) DO UPDATE SET expires_at = excluded.expires_at`,
  );
  const instanceOf = db.prepare<[string, string], { expires_at: number }>(
    'SELECT expires_at FROM lease_instances WHERE lease_id = ? AND instance_id = ?',
  );
  const liveInstances = db.prepare<[string, number], { n: number }>(
    'SELECT count(*) AS n FROM lease_instances WHERE lease_id = ? AND expires_at > ?',
  );
  const dropInstance = db.prepare<[string, string]>(
    'DELETE FROM lease_instances WHERE lease_id = ? AND instance_id = ?',
  );
  const dropInstances = db.prepare<[string]>('DELETE FROM lease_instances WHERE lease_id = ?');
  const nextExpiry = db.prepare<[string], { at: number | null }>(
    "SELECT min(expires_at) AS at FROM leases WHERE entitlement_id = ? AND state = 'active'",
  );
  const bumpSeats = db.prepare<[string, number]>(
    `INSERT INTO entitlement_counters (entitlement_id, seats_assigned) VALUES (?, ?)
     ON CONFLICT (entitlement_id) DO UPDATE SET seats_assigned = entitlement_counters.seats_assigned + excluded.seats_assigned`,
  );
  const counters = db.prepare<[string], { active_leases: number; seats_assigned: number }>(
    'SELECT active_leases, seats_assigned FROM entitlement_counters WHERE entitlement_id = ?',
  );
  const expiredOf = db.prepare<[string, number, number], LeaseRow>(
    "SELECT * FROM leases WHERE entitlement_id = ? AND state = 'active' AND expires_at <= ? ORDER BY expires_at LIMIT ?",
  );
  const expiredAll = db.prepare<[number, number], LeaseRow>(
    "SELECT * FROM leases WHERE state = 'active' AND expires_at <= ? ORDER BY expires_at LIMIT ?",
  );
  const liveCount = db.prepare<[string, number], { n: number }>(
    "SELECT count(*) AS n FROM leases WHERE entitlement_id = ? AND state = 'active' AND expires_at > ?",
  );
  const liveBorrowed = db.prepare<[string, number], { n: number }>(
    "SELECT count(*) AS n FROM leases WHERE entitlement_id = ? AND state = 'active' AND expires_at > ? AND borrowed = 1",
  );
  const lastOfSubject = db.prepare<[string, string, string], { seq: number }>(
    'SELECT seq FROM leases WHERE entitlement_id = ? AND subject_type = ? AND subject_key = ? ORDER BY seq DESC LIMIT 1',
  );
  const insertEvent =
    db.prepare(`INSERT INTO lease_events (at, kind, entitlement_id, lease_id, subject_type, subject_id, active_after, reason, flags)
    VALUES (@at, @kind, @entitlement_id, @lease_id, @subject_type, @subject_id, @active_after, @reason, @flags)`);

  return {
    insert(l: Omit<Lease, 'seq' | 'state' | 'endedAt'>): void {
      insert.run({
        id: l.id,
        entitlement_id: l.entitlementId,
        subject_type: l.subjectType,
        subject_id: l.subjectId,
        subject_key: l.subjectKey,
        features: JSON.stringify(l.features),
        granted_at: l.grantedAt,
        renewed_at: l.renewedAt,
        expires_at: l.expiresAt,
        overdraft: l.overdraft ? 1 : 0,
        borrowed: l.borrowed ? 1 : 0,
      });
    },
    get(id: string): Lease | undefined {
      const r = byId.get(id);
      return r && fromRow(r);
    },
    /** The subject's active lease on the entitlement (by canonical key), if any; expired or not. */
    activeFor(entitlementId: string, subjectType: string, subjectKey: string): Lease | undefined {
      const r = activeBySubject.get(entitlementId, subjectType, subjectKey);
      return r && fromRow(r);
    },
    refresh(id: string, at: number, expiresAt: number, features: string[]): void {
      refresh.run(at, expiresAt, JSON.stringify(features), id);
    },
    /** Ends an active lease; returns false when it was not active (someone else ended it). */
    end(id: string, state: Exclude<LeaseState, 'active'>, at: number): boolean {
      return end.run(state, at, id).changes === 1;
    },
    /** Adds delta to the entitlement's active-lease counter and returns the new value. */
    bumpActive(entitlementId: string, delta: number): number {
      return bumpActive.get(entitlementId, delta)?.active_leases ?? 0;
    },
    borrow(id: string): void {
      borrow.run(id);
    },
    pruneInstances(now: number): number {
      return pruneInstances.run(now).changes;
    },
    instanceExpiry(leaseId: string, instanceId: string): number | undefined {
      return instanceOf.get(leaseId, instanceId)?.expires_at;
    },
    liveInstances(leaseId: string, now: number): number {
      return liveInstances.get(leaseId, now)!.n;
    },
    putInstance(leaseId: string, instanceId: string, expiresAt: number): void {
      upsertInstance.run(leaseId, instanceId, expiresAt);
    },
    dropInstance(leaseId: string, instanceId: string): void {
      dropInstance.run(leaseId, instanceId);
    },
    dropInstances(leaseId: string): void {
      dropInstances.run(leaseId);
    },
    nextExpiry(entitlementId: string): number | undefined {
      return nextExpiry.get(entitlementId)?.at ?? undefined;
    },
    bumpSeats(entitlementId: string, delta: number): void {
      bumpSeats.run(entitlementId, delta);
    },
    counters(entitlementId: string): EntitlementCounters {
      const c = counters.get(entitlementId);
      return { activeLeases: c?.active_leases ?? 0, seatsAssigned: c?.seats_assigned ?? 0 };
    },
    /** Active rows whose time has passed, oldest first: what a reclaim or a sweep marks expired. */
    expired(entitlementId: string | null, now: number, limit: number): Lease[] {
      return (
        entitlementId === null
          ? expiredAll.all(now, limit)
          : expiredOf.all(entitlementId, now, limit)
      ).map(fromRow);
    },
    /** Leases in force now (an index range, for status pages; grants use the counter). */
    liveCount(entitlementId: string, now: number): number {
      return liveCount.get(entitlementId, now)!.n;
    },
    /** Borrowed leases in force now: a range of the leases_borrowed partial index (0009). */
    liveBorrowedCount(entitlementId: string, now: number): number {
      return liveBorrowed.get(entitlementId, now)!.n;
    },
    /** Of these entitlements, the one the subject leased on last (in any state), if any. */
    lastEntitlementOf(
      entitlementIds: readonly string[],
      subjectType: string,
      subjectKey: string,
    ): string | undefined {
      let best: { id: string; seq: number } | undefined;
      for (const id of entitlementIds) {
        const r = lastOfSubject.get(id, subjectType, subjectKey);
        if (r && (!best || r.seq > best.seq)) best = { id, seq: r.seq };
      }
      return best?.id;
    },
    event(e: LeaseEvent): void {
      insertEvent.run({
        at: e.at,
        kind: e.kind,
        entitlement_id: e.entitlementId,
        lease_id: e.leaseId,
        subject_type: e.subjectType,
        subject_id: e.subjectKey,
        active_after: e.activeAfter ?? null,
        reason: e.reason ?? null,
        flags: e.flags ?? null,
      });
    },
    list(f: LeaseFilter): ListedLease[] {
      const where = ["l.state = 'active'", 'l.expires_at > @now', 'l.seq > @after'];
      const params: Record<string, unknown> = { now: f.now, after: f.afterSeq, limit: f.limit };
      const add = (cond: string, key: string, v: string | undefined) => {
        if (v === undefined) return;
        where.push(cond);
        params[key] = v;
      };
      add('l.entitlement_id = @ent', 'ent', f.entitlementId);
      add('e.tenant_id = @tenant', 'tenant', f.tenantId);
      add('e.product_id = @product', 'product', f.productId);
      add('l.subject_type = @stype', 'stype', f.subjectType);
      add('l.subject_key = @sid', 'sid', f.subjectKey);
      const rows = db
        .prepare(
          `SELECT l.*, e.tenant_id, e.product_id FROM leases l JOIN entitlements e ON e.id = l.entitlement_id WHERE ${where.join(' AND ')} ORDER BY l.seq LIMIT @limit`,
        )
        .all(params) as Array<LeaseRow & { tenant_id: string; product_id: string }>;
      return rows.map((r) => ({ ...fromRow(r), tenantId: r.tenant_id, productId: r.product_id }));
    },
  };
}

export interface SeatRow {
  id: string;
  entitlement_id: string;
  subject_type: string;
  subject_id: string;
  subject_key: string;
  assigned_at: number;
  assigned_by: string;
  overdraft: number;
}

const seatFromRow = (r: SeatRow): Seat => ({
  id: r.id,
  entitlementId: r.entitlement_id,
  subjectType: r.subject_type,
  subjectId: r.subject_id,
  subjectKey: r.subject_key,
  assignedAt: r.assigned_at,
  assignedBy: r.assigned_by,
  ...(r.overdraft === 1 ? { overdraft: true } : {}),
});

/** All SQL about named seats. */
export function createSeatRepo(db: Db): SeatRepo {
  const insert =
    db.prepare(`INSERT INTO seats (id, entitlement_id, subject_type, subject_id, subject_key, assigned_at, assigned_by, overdraft)
    VALUES (@id, @entitlement_id, @subject_type, @subject_id, @subject_key, @assigned_at, @assigned_by, @overdraft)`);
  const bySubject = db.prepare<[string, string, string], SeatRow>(
    'SELECT * FROM seats WHERE entitlement_id = ? AND subject_type = ? AND subject_key = ?',
  );
  const byId = db.prepare<[string], SeatRow>('SELECT * FROM seats WHERE id = ?');
  const remove = db.prepare<[string]>('DELETE FROM seats WHERE id = ?');
  const page = db.prepare<[string, string, number], SeatRow>(
    'SELECT * FROM seats WHERE entitlement_id = ? AND id > ? ORDER BY id LIMIT ?',
  );
  return {
    insert(s: Seat): void {
      insert.run({
        id: s.id,
        entitlement_id: s.entitlementId,
        subject_type: s.subjectType,
        subject_id: s.subjectId,
        subject_key: s.subjectKey,
        assigned_at: s.assignedAt,
        assigned_by: s.assignedBy,
        overdraft: s.overdraft === true ? 1 : 0,
      });
    },
    /** The subject's seat on the entitlement, by canonical key. */
    find(entitlementId: string, subjectType: string, subjectKey: string): Seat | undefined {
      const r = bySubject.get(entitlementId, subjectType, subjectKey);
      return r && seatFromRow(r);
    },
    get(id: string): Seat | undefined {
      const r = byId.get(id);
      return r && seatFromRow(r);
    },
    remove(id: string): void {
      remove.run(id);
    },
    page(entitlementId: string, afterId: string, limit: number): Seat[] {
      return page.all(entitlementId, afterId, limit).map(seatFromRow);
    },
  };
}
