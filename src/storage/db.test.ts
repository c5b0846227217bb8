import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import { openDatabase } from './db.ts';
import { registerMigrationFunctions } from './migrations.ts';
import { MIGRATIONS } from './migrations.ts';
import { tempDir } from '../../test/helpers.ts';

let dir: string;
beforeEach(() => {
  dir = tempDir();
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A database as an older release left it: the migrations up to `version`, nothing after. */
function databaseAt(file: string, version: number, pageSize = 4096): Database.Database {
  const db = new Database(file);
  db.pragma(`page_size = ${pageSize}`);
  db.pragma('journal_mode = WAL');
  // As that release's migrate() did: its SQL functions, then each migration's SQL and JS step.
  registerMigrationFunctions(db);
  for (const m of MIGRATIONS.filter((x) => x.version <= version)) {
    db.exec(m.sql);
    m.after?.(db, { now: () => 0 });
    db.pragma(`user_version = ${m.version}`);
  }
  return db;
}

describe('opening the database', () => {
  it('makes a new database with 2 KiB pages, a 64 MiB checkpoint threshold and a 32 MiB page cache', () => {
    const db = openDatabase(join(dir, 'license.db'));
    expect(db.pragma('page_size', { simple: true })).toBe(2048);
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(32768);
    expect(db.pragma('cache_size', { simple: true })).toBe(-32768);
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.at(-1)!.version);
    db.close();
  });

  it('leaves the page size of an existing database as it is', () => {
    const file = join(dir, 'old.db');
    databaseAt(file, MIGRATIONS.at(-1)!.version, 4096).close();
    const db = openDatabase(file);
    expect(db.pragma('page_size', { simple: true })).toBe(4096);
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(16384);
    db.close();
  });
});

describe('migration 6: lease counters in a table of their own', () => {
  it('carries every non-zero counter over and drops the old columns', () => {
    const file = join(dir, 'v5.db');
    const old = databaseAt(file, 5);
    const insert =
      old.prepare(`INSERT INTO entitlements (id, tenant_id, product_id, policy_json, policy_type, max_seats, grace_days, starts_at, ends_at, status, source, created_at, updated_at, active_leases, seats_assigned)
      VALUES (?, 't', 'p', '{}', 'per_user', 10, 0, 0, 1, 'active', 'manual', 0, 0, ?, ?)`);
    insert.run('ent_a', 3, 2);
    insert.run('ent_b', 0, 0);
    insert.run('ent_c', 0, 7);
    old.close();

    const db = openDatabase(file);
    expect(
      db
        .prepare(
          'SELECT entitlement_id, active_leases, seats_assigned FROM entitlement_counters ORDER BY entitlement_id',
        )
        .all(),
    ).toEqual([
      { entitlement_id: 'ent_a', active_leases: 3, seats_assigned: 2 },
      { entitlement_id: 'ent_c', active_leases: 0, seats_assigned: 7 },
    ]);
    const columns = db
      .prepare("SELECT name FROM pragma_table_info('entitlements')")
      .pluck()
      .all() as string[];
    expect(columns).not.toContain('active_leases');
    expect(columns).not.toContain('seats_assigned');
    expect(db.prepare('SELECT count(*) FROM entitlements').pluck().get()).toBe(3);
    db.close();
  });
});
