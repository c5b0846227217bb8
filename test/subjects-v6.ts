/**
 * A version 6 database (the real migrations 1 to 6, as the release before subject keys left it)
 * holding the duplicates issue 11.3 describes: seats and leases whose subject ids differ only in
 * case or Unicode form. Migration 0007 must merge and report them.
 */
import Database from 'better-sqlite3';
import { MIGRATIONS } from '../src/storage/migrations.ts';
import { createAuditRepo } from '../src/storage/audit.ts';

export const V6_NOW = Date.parse('2025-06-01T12:00:00Z');
export const NFC_JOSE = 'jos\u00e9';
export const NFD_JOSE = 'jose\u0301';
const T = (minutes: number) => Date.parse('2025-01-01T00:00:00Z') + minutes * 60_000;

/** Builds the database at `file` with migrations 1–6 only; `duplicates: false` leaves the subjects distinct. */
export function buildV6Database(file: string, opts: { duplicates?: boolean } = {}): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  for (const m of MIGRATIONS.filter((x) => x.version <= 6)) {
    db.exec(m.sql);
    db.pragma(`user_version = ${m.version}`);
  }
  const ent =
    db.prepare(`INSERT INTO entitlements (id, tenant_id, product_id, policy_json, policy_type, max_seats, grace_days, starts_at, ends_at, status, source, created_at, updated_at)
    VALUES (?, 'acme', 'cad', ?, ?, ?, 30, ?, ?, 'active', 'manual', ?, ?)`);
  const start = Date.parse('2024-01-01T00:00:00Z');
  const end = Date.parse('2030-01-01T00:00:00Z');
  ent.run('ent_u', '{"type":"per_user","max_seats":3}', 'per_user', 3, start, end, start, start);
  ent.run(
    'ent_m',
    '{"type":"per_machine","max_seats":2}',
    'per_machine',
    2,
    start,
    end,
    start,
    start,
  );
  ent.run(
    'ent_c',
    '{"type":"concurrent","max_seats":2}',
    'concurrent',
    2,
    start,
    end,
    start,
    start,
  );

  const seat = db.prepare(
    'INSERT INTO seats (id, entitlement_id, subject_type, subject_id, assigned_at, assigned_by) VALUES (?, ?, ?, ?, ?, ?)',
  );
  const lease =
    db.prepare(`INSERT INTO leases (id, entitlement_id, subject_type, subject_id, features, granted_at, renewed_at, expires_at, state, ended_at)
    VALUES (?, ?, 'user', ?, '[]', ?, ?, ?, ?, ?)`);
  const event = db.prepare(
    "INSERT INTO lease_events (at, kind, entitlement_id, lease_id, subject_type, subject_id, active_after) VALUES (?, 'grant', ?, ?, 'user', ?, 1)",
  );
  const counters = db.prepare(
    'INSERT INTO entitlement_counters (entitlement_id, active_leases, seats_assigned) VALUES (?, ?, ?)',
  );
  const live = V6_NOW + 3_600_000;
  const dup = opts.duplicates !== false;

  seat.run('seat_u1', 'ent_u', 'user', dup ? 'alice' : 'alice', T(2), 'auto');
  seat.run('seat_u2', 'ent_u', 'user', dup ? 'Alice' : 'amy', T(1), 'token:tok_admin');
  seat.run('seat_u6', 'ent_u', 'user', 'bob', T(6), 'auto');
  if (dup) {
    seat.run('seat_u3', 'ent_u', 'user', 'ALICE', T(3), 'auto');
    seat.run('seat_u4', 'ent_u', 'user', NFC_JOSE, T(5), 'auto');
    seat.run('seat_u5', 'ent_u', 'user', NFD_JOSE, T(4), 'auto');
  }
  seat.run('seat_m1', 'ent_m', 'machine', 'WS-042.corp.example', T(1), 'auto');
  if (dup) seat.run('seat_m2', 'ent_m', 'machine', 'ws-042.CORP.example', T(2), 'auto');
  counters.run('ent_u', 1, dup ? 6 : 3);
  counters.run('ent_m', 0, dup ? 2 : 1);
  counters.run('ent_c', dup ? 3 : 1, 0);

  lease.run('lease_u1', 'ent_u', dup ? 'Alice' : 'amy', T(10), V6_NOW, live, 'active', null);
  lease.run('lease_c1', 'ent_c', 'CORP\\alice', T(11), V6_NOW, live, 'active', null);
  if (dup) {
    lease.run('lease_c2', 'ent_c', 'corp\\ALICE', T(12), V6_NOW, live, 'active', null);
    // Active in state but run out: no longer in force, so not a collision.
    lease.run('lease_c3', 'ent_c', 'bob', T(13), T(13), T(20), 'active', null);
    lease.run('lease_c4', 'ent_c', 'Bob', T(14), T(14), T(21), 'released', T(15));
  }
  for (const [i, id] of (dup
    ? ['alice', 'Alice', 'ALICE', NFD_JOSE, NFC_JOSE, 'bob']
    : ['alice', 'amy', 'bob']
  ).entries())
    event.run(T(30 + i), 'ent_u', `lease_e${i}`, id);

  // An audit chain to continue: the migration's row must chain onto it.
  db.transaction(() =>
    createAuditRepo(db).append({
      at: T(0),
      actor: 'cli',
      action: 'entitlement.create',
      targetType: 'entitlement',
      targetId: 'ent_u',
      details: {},
    }),
  )();
  db.close();
}
