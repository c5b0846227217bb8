/** PostgreSQL for tests: a fresh, empty database per call on the run's one cluster (global setup). */
import { createDatabase } from '../scripts/pg-cluster.mjs';

/** The environment variable that carries the test cluster's superuser URL to the workers. */
export const PG_ADMIN_URL_ENV = 'BPLS_TEST_PG_ADMIN_URL';

let made = 0;

/**
 * Creates an empty database on the test cluster and returns its URL
 * (`postgres://bpls@127.0.0.1:<port>/<name>`). The name is the label (lower-cased, anything
 * outside a-z, 0-9 and _ made `_`, cut to 40 characters), this worker's pid and a counter, so test
 * files running in parallel workers never share a database. Nothing drops it: the cluster and all
 * its databases go at the end of the run.
 *
 * @throws {Error} when the run has no cluster (the global setup did not run)
 */
export async function freshPgUrl(label: string): Promise<string> {
  const admin = process.env[PG_ADMIN_URL_ENV];
  if (!admin) {
    throw new Error(
      `${PG_ADMIN_URL_ENV} is not set: the PostgreSQL test cluster is started by test/global-setup.ts (run the tests with vitest)`,
    );
  }
  const stem = label
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_')
    .slice(0, 40);
  made += 1;
  return createDatabase(admin, `t_${stem}_${process.pid}_${made}`);
}
