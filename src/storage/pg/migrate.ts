import { AppError } from '../../errors.ts';
import type { PgDb } from './driver.ts';
import schema from './schema.sql';

/** The lock migrations run under: two processes starting at once never both apply one. */
const MIGRATE_LOCK = 0x62706d67;

export interface PgMigration {
  version: number;
  name: string;
  sql: string;
}

/**
 * PostgreSQL's forward-only migrations, embedded in the build. The first is the whole schema the
 * SQLite migrations 0001…0009 reach (a PostgreSQL database starts there); later ones follow the
 * SQLite ones one for one. schema_migrations records what was applied.
 */
export const PG_MIGRATIONS: ReadonlyArray<PgMigration> = [
  { version: 1, name: '0001_schema', sql: schema },
];

/**
 * Applies the pending migrations in one transaction under an advisory lock, blocking (start-up).
 * @throws AppError `conflict` when the database was migrated by a newer version of the server;
 *   PgError when PostgreSQL refuses or cannot be reached.
 */
export function migratePg(pg: PgDb): void {
  pg.exec(`BEGIN; SELECT pg_advisory_xact_lock(${MIGRATE_LOCK})`);
  try {
    // The first migration makes schema_migrations itself.
    const made = pg.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS made").rows[0]!
      .made;
    const applied = made
      ? Number(pg.query('SELECT coalesce(max(version), 0) AS v FROM schema_migrations').rows[0]!.v)
      : 0;
    const latest = PG_MIGRATIONS[PG_MIGRATIONS.length - 1]!.version;
    if (applied > latest) {
      throw new AppError(
        'conflict',
        `the PostgreSQL database is at schema version ${applied}, newer than this server's ${latest}; refusing to start`,
        { database: pg.name, schema_version: applied, supported: latest },
        'run the newer bp-license-server that migrated it, on every node',
      );
    }
    for (const m of PG_MIGRATIONS) {
      if (m.version <= applied) continue;
      pg.exec(m.sql, { raw: true });
      pg.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
        m.version,
        m.name,
        Date.now(),
      ]);
    }
    pg.exec('COMMIT');
  } catch (err) {
    if (pg.inTransaction) {
      try {
        pg.exec('ROLLBACK');
      } catch {
        /* the connection is gone: PostgreSQL rolled back */
      }
    }
    throw err;
  }
}
