import type { Db } from './db.ts';
import { subjectKey } from '../subjects.ts';
import m0001 from './migrations/0001_init.sql';
import m0002 from './migrations/0002_leases.sql';
import m0003 from './migrations/0003_time.sql';
import m0004 from './migrations/0004_sync.sql';
import m0005 from './migrations/0005_entitlement_epoch.sql';
import m0006 from './migrations/0006_lease_counters.sql';
import m0007 from './migrations/0007_subject_keys.sql';
import m0008 from './migrations/0008_quotas.sql';
import m0009 from './migrations/0009_floating.sql';
import { reportSubjectMerges } from './subject-keys.ts';

/** Something a migration wants the operator to know (logged by `serve`, printed by the CLI). */
export interface MigrationNote {
  migration: string;
  message: string;
  details?: Record<string, unknown>;
}

export interface Migration {
  version: number;
  name: string;
  sql: string;
  /** Runs after `sql`, in the same transaction: work SQLite cannot do alone. */
  after?: (db: Db, env: { now: () => number }) => MigrationNote[];
}

/** Forward-only migrations, embedded in the build; `user_version` records how far a database is. */
export const MIGRATIONS: ReadonlyArray<Migration> = [
  { version: 1, name: '0001_init', sql: m0001 },
  { version: 2, name: '0002_leases', sql: m0002 },
  { version: 3, name: '0003_time', sql: m0003 },
  { version: 4, name: '0004_sync', sql: m0004 },
  { version: 5, name: '0005_entitlement_epoch', sql: m0005 },
  { version: 6, name: '0006_lease_counters', sql: m0006 },
  { version: 7, name: '0007_subject_keys', sql: m0007, after: reportSubjectMerges },
  { version: 8, name: '0008_quotas', sql: m0008 },
  { version: 9, name: '0009_floating', sql: m0009 },
];

/**
 * SQL functions the migrations call: SQLite has no Unicode normalisation, so 0007 computes subject
 * keys (src/subjects.ts) through this one. Deterministic, so SQLite may use it in indexes.
 */
export function registerMigrationFunctions(db: Db): void {
  db.function('bp_subject_key', { deterministic: true }, (id: unknown) =>
    typeof id === 'string' ? subjectKey(id) : id,
  );
}
