// The PostgreSQL store's grant figures (issue 17): durable grants/s over HTTP with the server on
// PostgreSQL, one process and two, against the SQLite grant figure of the same `make bench` run.
//
//   node bench/pg.mjs                 alone (short runs, as BENCH_QUICK=1): prints the figures as JSON
//   BENCH_SQLITE_GRANT_RPS=9000 node bench/pg.mjs   alone, with a SQLite figure for the ratio
//
// bench/run.mjs calls pgBench() at its end. A throwaway cluster (scripts/pg-cluster.mjs, durable
// commits: fsync and synchronous_commit on) and a fresh database; `init` and `serve` by the
// executable (dist/bp-license-server) with --database; the entitlements of the SQLite grant run
// (lib/shapes.mjs provisionItems) imported over the admin API. Then, each after a warm-up:
//   (a) one server process, one load process of 64 connections;
//   (b) a second server process on a copy of the data dir (same database, same identity), and two
//       load processes at once, 32 connections each, one per server: rps summed.
// Over-grants and counter mismatches are counted in the database after the servers stopped.
// Every process started here is stopped by pid (lib/server.mjs), and the cluster is stopped.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { createDatabase, startCluster } from '../scripts/pg-cluster.mjs';
import {
  adminApi,
  cpuSeconds,
  initDataDir,
  killStrays,
  runJsonChild,
  startServer,
} from './lib/server.mjs';
import { provisionItems } from './lib/shapes.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const EXE = join(root, 'dist', 'bp-license-server');
const LOAD = join(root, 'bench', 'load.mjs');
/** The connections of the one-process run; the two-process run splits them. */
const CONNECTIONS = 64;

const round = (v, d = 1) =>
  typeof v === 'number' && Number.isFinite(v) ? Math.round(v * 10 ** d) / 10 ** d : v;

/** One load.mjs process of grants against `url` (new subjects `<tag>-n`); its JSON result. */
const load = (url, connections, durationS, tag) =>
  runJsonChild([
    LOAD,
    JSON.stringify({ url, kind: 'grant', connections, durationS, warmupS: 0, tag }),
  ]);

const failuresOf = (r) => r.non_2xx + r.errors + r.timeouts;

/**
 * Load processes at once, one per server (`connections` each), after a warm-up of the same shape.
 * Returns the summed rps, the worst p50/p99, the failures (warm-up included) and each server's CPU.
 */
async function grantRun(servers, connections, T, tag) {
  const warm = await Promise.all(
    servers.map((s, i) => load(s.url, connections, T.warmS, `${tag}-warm${i}`)),
  );
  const cpu0 = servers.map((s) => cpuSeconds(s.pid));
  const t0 = performance.now();
  const runs = await Promise.all(
    servers.map((s, i) => load(s.url, connections, T.runS, `${tag}-${i}`)),
  );
  const wall = (performance.now() - t0) / 1000;
  return {
    processes: servers.length,
    connections_each: connections,
    rps: round(
      runs.reduce((sum, r) => sum + r.rps, 0),
      0,
    ),
    p50_ms: Math.max(...runs.map((r) => r.p50_ms)),
    p99_ms: Math.max(...runs.map((r) => r.p99_ms)),
    max_ms: Math.max(...runs.map((r) => r.max_ms)),
    failures: [...runs, ...warm].reduce((sum, r) => sum + failuresOf(r), 0),
    status_codes: runs.map((r) => r.status_codes),
    server_cpu_pct: servers.map((s, i) => round(((cpuSeconds(s.pid) - cpu0[i]) / wall) * 100, 0)),
    answered_201: [...runs, ...warm].reduce((sum, r) => sum + r.requests_2xx, 0),
  };
}

/** Per bench entitlement, active lease rows against max_seats and the active_leases counter. */
async function auditLeases(url) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const r = await client.query(
      `SELECT e.id, e.max_seats,
              coalesce((SELECT c.active_leases FROM entitlement_counters c WHERE c.entitlement_id = e.id), 0) AS counter,
              (SELECT count(*) FROM leases l WHERE l.entitlement_id = e.id AND l.state = 'active') AS active_rows
         FROM entitlements e WHERE e.external_id LIKE 'bench-%'`,
    );
    return r.rows.map((row) => ({
      max_seats: row.max_seats === null ? null : Number(row.max_seats),
      counter: Number(row.counter),
      active_rows: Number(row.active_rows),
    }));
  } finally {
    await client.end();
  }
}

/**
 * Runs the PostgreSQL figures. `T`: seconds of warm-up and of each measured run; `sqliteGrantRps`:
 * the SQLite grant figure of the same run (null: no ratio). `log`: progress lines.
 *
 * @returns {Promise<object>} `one_server`, `two_servers` (rps, p50/p99/max ms, failures, server
 *   CPU %), `over_grants`, `counter_mismatches`, `active_rows` vs `answered_201`,
 *   `two_servers_vs_sqlite_grant`, `note`
 * @throws {Error} PostgreSQL missing (the Debian package to install), a server that would not
 *   start or stopped other than cleanly on SIGTERM, a load process that failed
 */
export async function pgBench({ T, sqliteGrantRps = null, log = () => {} }) {
  const work = mkdtempSync(join(os.tmpdir(), 'bpls-bench-pg-'));
  const cluster = await startCluster();
  const servers = [];
  try {
    const url = await createDatabase(cluster.url, 'bench');
    const cmd = [EXE, ['--database', url]];
    const dirs = [join(work, 'a'), join(work, 'b')];
    const { admin_token: token } = initDataDir(cmd, dirs[0]);
    // The second process's data dir: the identity files only (the database is PostgreSQL).
    mkdirSync(dirs[1]);
    for (const f of ['server.key', 'server.json']) copyFileSync(join(dirs[0], f), join(dirs[1], f));
    const serve = async (i) => {
      const s = await startServer(cmd, dirs[i], { logFile: join(work, `server-${i}.log`) });
      servers.push(s);
      return s;
    };
    const first = await serve(0);
    const prov = await adminApi(first.url, token).post('/v1/entitlements/import', {
      entitlements: provisionItems(),
    });
    if (prov.created !== provisionItems().length)
      throw new Error(`provisioning answered ${JSON.stringify({ created: prov.created })}`);

    log(`postgres: one server, ${CONNECTIONS} connections…`);
    const one = await grantRun([first], CONNECTIONS, T, 'pg1');
    log(
      `postgres: one server ${one.rps} rps, p99 ${one.p99_ms} ms, ${one.failures} failed, server CPU ${one.server_cpu_pct[0]} %`,
    );
    const second = await serve(1);
    log(`postgres: two servers, ${CONNECTIONS / 2} connections each…`);
    const two = await grantRun([first, second], CONNECTIONS / 2, T, 'pg2');
    log(
      `postgres: two servers ${two.rps} rps (summed), p99 ${two.p99_ms} ms, ${two.failures} failed, server CPU ${two.server_cpu_pct.join(' + ')} %`,
    );

    for (const s of servers) {
      const exit = await s.stop();
      if (exit.code !== 0)
        throw new Error(
          `a PostgreSQL server exited ${exit.code ?? exit.signal} on SIGTERM (log: ${work})`,
        );
    }
    const rows = await auditLeases(url);
    const activeRows = rows.reduce((sum, r) => sum + r.active_rows, 0);
    return {
      one_server: one,
      two_servers: two,
      over_grants: rows.filter((r) => r.max_seats !== null && r.active_rows > r.max_seats).length,
      counter_mismatches: rows.filter((r) => r.counter !== r.active_rows).length,
      active_rows: activeRows,
      // Each load process stops with requests in flight: granted, not counted as answered.
      answered_201: one.answered_201 + two.answered_201,
      bookkeeping_consistent:
        activeRows >= one.answered_201 + two.answered_201 &&
        rows.every((r) => r.counter === r.active_rows),
      sqlite_grant_rps: sqliteGrantRps,
      two_servers_vs_sqlite_grant: sqliteGrantRps > 0 ? round(two.rps / sqliteGrantRps, 3) : null,
      settings: { warmup_s: T.warmS, run_s: T.runS, connections: CONNECTIONS },
      note: "durable grants/s over HTTP on PostgreSQL (a throwaway local cluster, fsync and synchronous_commit on), the SQLite grant run's 100 entitlements; two_servers: two server processes on one database, a load process each (32 connections), rps summed, p99 the worse; over_grants/counter_mismatches from the database after the servers stopped; active_rows >= answered_201 (no answered grant lost) and every counter equal to its rows: bookkeeping_consistent",
    };
  } finally {
    for (const s of servers) await s.stop().catch(() => {});
    killStrays();
    await cluster.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

// Alone: short runs, the figures as JSON.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    const sqlite = Number(process.env.BENCH_SQLITE_GRANT_RPS ?? '');
    const r = await pgBench({
      T: { warmS: 1, runS: 5 },
      sqliteGrantRps: sqlite > 0 ? sqlite : null,
      log: (m) => console.error(`bench: ${m}`),
    });
    console.log(JSON.stringify(r, null, 2));
  } catch (err) {
    killStrays();
    console.error(`bench: postgres failed: ${err instanceof Error ? err.stack : err}`);
    process.exitCode = 1;
  }
}
