// make bench: the project's performance figures and their targets (bench/README.md, Targets),
// measured in one run.
//
//   node bench/run.mjs            full run (~15 s per HTTP run, a 60 s tail run; whole bench well under 5 minutes)
//   BENCH_QUICK=1 node bench/run.mjs   short runs (~5 s each, a 10 s tail run; about one minute)
//   BENCH_KEEP=1                  keep the temp folder (data dir, server log) and say where it is
//
// 1. Ceilings, in a child process: raw Ed25519 signing, SQLite commits at the server's durability,
//    and the project's own grant and renew called in process (bench/inproc.mjs).
// 2. The real server: dist/bp-license-server (the single executable, `make bench` builds it) on a
//    fresh data dir in its default durability (full), on 127.0.0.1, port 0. Load from a separate
//    process (bench/load.mjs, autocannon, 64 connections): grant (new subjects on 100 entitlements
//    with room), renew (existing leases, round robin), and grant on one entitlement already holding
//    100,000 active leases; after the renew run, the tail run (bench/lib/tail.mjs: 60 s of grants, p99.9
//    and max, WAL checkpoints included). Then a bulk import of 100,000 entitlements over the admin API.
// 3. After the server stops: over-grants counted in its database; the bundle import (when built).
// 4. The same grants with the server on PostgreSQL, one process and two (bench/pg.mjs).
// Prints a table, writes bench/results/latest.json. Exits 0 when targets are missed (the JSON says
// which), 1 when the bench itself breaks.
import {
  mkdtempSync,
  mkdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  existsSync,
  statSync,
} from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { buildInproc } from './lib/build-inproc.mjs';
import {
  adminApi,
  cpuSeconds,
  initDataDir,
  killStrays,
  memMb,
  runJsonChild,
  startServer,
} from './lib/server.mjs';
import {
  BULK_IMPORT_COUNT,
  HOT_PREFILL,
  bulkImportItems,
  grantRequest,
  provisionItems,
} from './lib/shapes.mjs';
import { measureBundleImport } from './lib/bundle.mjs';
import { measureSdkVerify } from './lib/sdk.mjs';
import { evaluateTargets, printTable } from './lib/table.mjs';
import { tailRun } from './lib/tail.mjs';
import { pgBench } from './pg.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const QUICK = process.env.BENCH_QUICK === '1';
const T = QUICK
  ? { ceilMs: 1500, httpS: 5, warmS: 1, tailS: 10 }
  : { ceilMs: 4000, httpS: 15, warmS: 3, tailS: 60 };
const CONNECTIONS = 64;
const RENEW_POOL = 10_000;
const EXE = join(root, 'dist', 'bp-license-server');

const log = (msg) => console.log(`bench: ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const round = (v, d = 1) =>
  typeof v === 'number' && Number.isFinite(v) ? Math.round(v * 10 ** d) / 10 ** d : v;

async function httpRun(server, kind, extra = {}) {
  const base = { url: server.url, kind, connections: CONNECTIONS, ...extra };
  // Warm-up in its own loader process run, so the measured run's server CPU is its own.
  const warm =
    T.warmS > 0
      ? await runJsonChild([
          join(root, 'bench/load.mjs'),
          JSON.stringify({ ...base, durationS: T.warmS, warmupS: 0, tag: `${kind}-warm` }),
        ])
      : null;
  const cpu0 = cpuSeconds(server.pid);
  const t0 = performance.now();
  const r = await runJsonChild([
    join(root, 'bench/load.mjs'),
    JSON.stringify({ ...base, durationS: T.httpS, warmupS: 0, tag: kind }),
  ]);
  const wall = (performance.now() - t0) / 1000;
  r.server_cpu_pct = ((cpuSeconds(server.pid) - cpu0) / wall) * 100;
  r.warmup_2xx = warm ? warm.requests_2xx : 0;
  r.warmup_sent = warm ? warm.requests_sent : 0;
  r.warmup_failures = warm ? warm.non_2xx + warm.errors + warm.timeouts : 0;
  delete r.warmup_non_2xx;
  delete r.warmup_loader_cpu_s;
  const failures = r.non_2xx + r.errors + r.timeouts + r.warmup_failures;
  log(
    `${kind}: ${Math.round(r.rps)} rps, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms, ${failures} failed, server CPU ${Math.round(r.server_cpu_pct)} %`,
  );
  return r;
}

async function leaseIdsOf(api, entitlementIds, max) {
  const ids = [];
  for (const ent of entitlementIds) {
    let cursor = null;
    for (let page = 0; page < 1000 && ids.length < max; page++) {
      const q = new URLSearchParams({
        entitlement_id: ent,
        limit: '500',
        ...(cursor ? { cursor } : {}),
      });
      const r = await api.get(`/v1/leases?${q}`);
      for (const l of r.data) ids.push(l.lease_id);
      cursor = r.next_cursor;
      if (!cursor) break;
    }
    if (ids.length >= max) break;
  }
  return ids.slice(0, max);
}

/** After the server stopped: for each bench entitlement, active lease rows vs max_seats and the counter. */
function auditLeases(dbFile) {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    return db
      .prepare(
        `SELECT e.id, e.external_id, e.max_seats, coalesce((SELECT c.active_leases FROM entitlement_counters c WHERE c.entitlement_id = e.id), 0) AS counter,
                (SELECT count(*) FROM leases l WHERE l.entitlement_id = e.id AND l.state = 'active') AS active_rows,
                (SELECT count(*) FROM leases l WHERE l.entitlement_id = e.id) AS all_rows
           FROM entitlements e WHERE e.external_id LIKE 'bench-%'`,
      )
      .all();
  } finally {
    db.close();
  }
}

const CEILING_KEYS = [
  'sign_per_s',
  'sign_async_64_per_s',
  'sqlite_commit_per_s',
  'grant_inproc_seq_per_s',
  'grant_inproc_64_per_s',
  'renew_inproc_seq_per_s',
  'renew_inproc_64_per_s',
];

/** The ceiling figures: the mean of the samples taken before and after the HTTP runs, and both samples. */
function ceilingFigures(before, after) {
  const mean = (k) => round((before[k] + after[k]) / 2, 0);
  const out = {
    sign_per_s: mean('sign_per_s'),
    sqlite_commit_per_s: mean('sqlite_commit_per_s'),
    grant_inproc_per_s: mean('grant_inproc_64_per_s'),
    renew_inproc_per_s: mean('renew_inproc_64_per_s'),
    grant_inproc_mode: `concurrent: ${CONNECTIONS} grants in flight (group commit applies, as in the server); the ratios use this`,
    renew_inproc_mode: `concurrent: ${CONNECTIONS} renewals in flight; the ratios use this`,
  };
  for (const k of CEILING_KEYS) if (!(k in out)) out[k] = mean(k);
  out.samples = {
    before_http: Object.fromEntries(CEILING_KEYS.map((k) => [k, round(before[k], 0)])),
    after_http: Object.fromEntries(CEILING_KEYS.map((k) => [k, round(after[k], 0)])),
  };
  out.note =
    'each figure is the mean of two samples, before and after the HTTP runs (samples); sign_per_s is one core, synchronous; sign_async_64_per_s is the libuv pool with 64 in flight; the in-process grant/renew use the same 100 entitlements as the HTTP grant run';
  out.inproc_over_grants = before.over_grants + after.over_grants;
  // Microseconds, so two decimals: the mean of both samples, as for the rates above.
  out.strict_json_parse_us = round(
    (before.strict_json_parse_us + after.strict_json_parse_us) / 2,
    2,
  );
  out.strict_json_claims_bytes = before.strict_json_claims_bytes;
  out.samples.before_http.strict_json_parse_us = round(before.strict_json_parse_us, 2);
  out.samples.after_http.strict_json_parse_us = round(after.strict_json_parse_us, 2);
  return out;
}

/** CPU time stolen by the hypervisor so far (all CPUs, seconds): a noisy neighbour shows here. */
function stealSeconds() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
  return Number(f[8] ?? 0) / 100;
}

function machine() {
  const cpus = os.cpus();
  return {
    cores: os.availableParallelism(),
    cpu_model: cpus[0]?.model ?? null,
    mem_gb: round(os.totalmem() / 2 ** 30, 1),
    node: process.version,
    server_node: process.version, // the executable is a copy of this same Node 24 (scripts/build-binary.mjs)
    kernel: os.release(),
    when: new Date().toISOString(),
  };
}

async function main() {
  if (!process.versions.node.startsWith('24.'))
    throw new Error(
      `the bench needs Node 24 (node_modules/.bin first on PATH); this is ${process.version}`,
    );
  if (!existsSync(EXE))
    throw new Error(
      `${EXE} is missing: run make bench (it builds it) or node scripts/build-binary.mjs`,
    );
  const started = performance.now();
  const steal0 = stealSeconds();
  const when = machine();
  log(
    `${QUICK ? 'quick' : 'full'} run on ${when.cores} cores, ${when.cpu_model}; executable built ${statSync(EXE).mtime.toISOString()}`,
  );

  const work = mkdtempSync(join(os.tmpdir(), 'bpls-bench-'));
  const result = {
    mode: QUICK ? 'quick' : 'full',
    settings: {
      connections: CONNECTIONS,
      http_duration_s: T.httpS,
      warmup_s: T.warmS,
      ceiling_ms: T.ceilMs,
      durability: 'full (the default)',
      server: 'dist/bp-license-server',
    },
  };
  let server;
  let pgFailure;
  try {
    // 1. Ceilings.
    await buildInproc();
    log('ceilings (sign, SQLite commit, grant and renew in process)…');
    const ceilBefore = await runJsonChild([
      join(root, 'bench/inproc.mjs'),
      'ceiling',
      JSON.stringify({ ms: T.ceilMs }),
    ]);
    log(
      `sign ${Math.round(ceilBefore.sign_per_s)}/s, commit ${Math.round(ceilBefore.sqlite_commit_per_s)}/s, grant ${Math.round(ceilBefore.grant_inproc_64_per_s)}/s, renew ${Math.round(ceilBefore.renew_inproc_64_per_s)}/s (measured again after the HTTP runs)`,
    );

    // 2. The server.
    const dataDir = join(work, 'data');
    const { admin_token: token } = initDataDir([EXE, []], dataDir);
    server = await startServer([EXE, []], dataDir, { logFile: join(work, 'server.log') });
    let firstAnswerMs = null;
    for (let i = 0; i < 200 && firstAnswerMs === null; i++) {
      try {
        const res = await fetch(`${server.url}/healthz`);
        if (res.ok) firstAnswerMs = performance.now() - server.startedAt;
      } catch {
        await sleep(10);
      }
    }
    result.startup = {
      listening_ms: round(server.listeningMs, 0),
      first_answer_ms: round(firstAnswerMs, 0),
    };
    const api = adminApi(server.url, token);
    for (let i = 0; i < 5; i++) {
      await api.get('/healthz');
      await api.get('/v1/license/keys');
      await api.get('/v1/entitlements?limit=10');
    }
    await sleep(1000);
    const idle = memMb(server.pid);
    log(
      `listening after ${result.startup.listening_ms} ms, first answer ${result.startup.first_answer_ms} ms, idle RSS ${round(idle.rss)} MB`,
    );

    const prov = await api.post('/v1/entitlements/import', { entitlements: provisionItems() });
    const entIds = prov.items.map((x) => x.entitlement_id);
    const hotId = entIds.at(-1);
    const grantEnts = entIds.slice(0, -1);

    // SDK verification: a real token of this server, verified by each SDK on one core.
    {
      const res = await fetch(`${server.url}/v1/license/lease`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(grantRequest(0, 'sdk-bench')),
      });
      const lease = await res.json();
      const keys = (await api.get('/v1/license/keys')).keys;
      log('SDK token verification (TypeScript, Rust; the Rust release build may take a minute)…');
      result.sdk = measureSdkVerify({
        root,
        work,
        token: lease.token,
        keys,
        product: grantRequest(0, 'sdk-bench').product_id,
        ms: QUICK ? 1000 : 3000,
      });
      log(
        `verify/s: TypeScript ${Math.round(result.sdk.ts_verify_per_s ?? NaN)}, Rust ${Math.round(result.sdk.rust_verify_per_s ?? NaN)}`,
      );
    }

    result.http = {};
    result.http.grant = await httpRun(server, 'grant');

    const ids = await leaseIdsOf(api, grantEnts, RENEW_POOL);
    const idsFile = join(work, 'lease-ids.json');
    writeFileSync(idsFile, JSON.stringify(ids));
    result.http.renew = await httpRun(server, 'renew', { leaseIdsFile: idsFile });
    result.http.renew.lease_pool = ids.length;
    // After the renew run, so that renewals meet the database the grant run left, as before the tail run existed.
    log(`tail: ${T.tailS} s of grants at ${CONNECTIONS} connections…`);
    result.tail = await tailRun(server, { durationS: T.tailS, connections: CONNECTIONS });
    log(
      `tail: p99 ${result.tail.p99_ms} ms, p99.9 ${result.tail.p99_9_ms} ms, max ${result.tail.max_ms} ms, ${result.tail.checkpoints_serving} serving-thread checkpoints (longest ${result.tail.checkpoint_serving_max_ms} ms)`,
    );

    log(`writing ${HOT_PREFILL.toLocaleString('en-US')} active leases on the hot entitlement…`);
    const pre = await runJsonChild([
      join(root, 'bench/inproc.mjs'),
      'populate',
      JSON.stringify({ dataDir, entitlementId: hotId, count: HOT_PREFILL }),
    ]);
    if (pre.active_after < HOT_PREFILL)
      throw new Error(
        `the hot entitlement holds ${pre.active_after} leases, wanted ${HOT_PREFILL}`,
      );
    const afterPrefill = memMb(server.pid);
    result.http.grant_hot_entitlement = await httpRun(server, 'grant_hot');
    result.http.grant_hot_entitlement.active_leases_before = pre.active_after;
    result.http.grant_hot_entitlement.prefill_s = round(pre.seconds, 2);
    const withLeases = memMb(server.pid);

    // Bulk import of 100,000 entitlements over HTTP: time from send to answer.
    log(`bulk import of ${BULK_IMPORT_COUNT.toLocaleString('en-US')} entitlements…`);
    const body = JSON.stringify({ entitlements: bulkImportItems() });
    const t0 = performance.now();
    const imp = await api.post('/v1/entitlements/import', body);
    const bulkS = (performance.now() - t0) / 1000;
    if (imp.total !== BULK_IMPORT_COUNT || imp.created !== BULK_IMPORT_COUNT)
      throw new Error(
        `bulk import answered ${JSON.stringify({ total: imp.total, created: imp.created })}`,
      );
    const afterImport = memMb(server.pid);
    log(`bulk import: ${bulkS.toFixed(2)} s (${(body.length / 2 ** 20).toFixed(1)} MiB body)`);

    const stop = await server.stop();
    const peak = afterImport.hwm;
    if (stop.code !== 0)
      throw new Error(
        `the server exited ${stop.code ?? stop.signal} on SIGTERM (log: ${join(work, 'server.log')})`,
      );

    // The ceilings again, now that the server is gone: the figures are the mean of both samples,
    // so a machine that slowed down (or sped up) during the run moves both sides of the ratios.
    log('ceilings again…');
    const ceilAfter = await runJsonChild([
      join(root, 'bench/inproc.mjs'),
      'ceiling',
      JSON.stringify({ ms: T.ceilMs }),
    ]);
    result.ceiling = ceilingFigures(ceilBefore, ceilAfter);

    // 3. Over-grants and bookkeeping, from the server's database.
    const rows = auditLeases(join(dataDir, 'license.db'));
    const over = (r) => r.max_seats !== null && r.active_rows > r.max_seats;
    const grantRows = rows.filter((r) => r.external_id.startsWith('bench-grant-'));
    const hotRow = rows.find((r) => r.external_id === 'bench-hot');
    const answered = (h) => h.requests_2xx + h.warmup_2xx;
    const sent = (h) => h.requests_sent + h.warmup_sent;
    // The tail run grants on the same entitlements as the grant run, and so did the one grant whose
    // token the SDK figures verify.
    const tailAnswered = result.tail.requests_2xx + 1;
    const tailSent = (result.tail.requests_sent ?? Infinity) + 1;
    result.http.grant.over_grants = grantRows.filter(over).length;
    result.http.renew.over_grants = grantRows.filter(over).length;
    result.http.grant_hot_entitlement.over_grants = hotRow && over(hotRow) ? 1 : 0;
    const grantLeases = grantRows.reduce((s, r) => s + r.active_rows, 0);
    const hotLeases = hotRow?.active_rows ?? null;
    const gRun = result.http.grant;
    const hRun = result.http.grant_hot_entitlement;
    result.bookkeeping = {
      grant_entitlements_active_leases: grantLeases,
      grant_answered_201: answered(gRun) + tailAnswered,
      grant_sent: sent(gRun) + tailSent,
      hot_entitlement_active_leases: hotLeases,
      hot_prefill_plus_answered_201: HOT_PREFILL + answered(hRun),
      hot_prefill_plus_sent: HOT_PREFILL + sent(hRun),
      counter_mismatches: rows.filter((r) => r.counter !== r.active_rows).length,
      consistent:
        grantLeases >= answered(gRun) + tailAnswered &&
        grantLeases <= sent(gRun) + tailSent &&
        hotLeases >= HOT_PREFILL + answered(hRun) &&
        hotLeases <= HOT_PREFILL + sent(hRun) &&
        rows.every((r) => r.counter === r.active_rows),
      note: 'active lease rows in the database after the server stopped, against the grants answered 201 and the grants sent (warm-up included; each run stops with up to 64 requests in flight, granted but not counted as answered): consistent when answered <= rows <= sent (no answered grant lost, none doubled) and every active_leases counter equals its rows',
    };
    result.over_grants_total = rows.filter(over).length;
    result.http_failures_total =
      ['grant', 'renew', 'grant_hot_entitlement'].reduce(
        (s, k) =>
          s +
          result.http[k].non_2xx +
          result.http[k].errors +
          result.http[k].timeouts +
          result.http[k].warmup_failures,
        0,
      ) +
      result.tail.non_2xx +
      result.tail.errors +
      result.tail.timeouts;
    for (const h of [...Object.values(result.http), result.tail])
      for (const k of Object.keys(h)) h[k] = round(h[k], 2);

    const g = result.http.grant.rps;
    result.ratios = {
      grant_http_vs_inproc: round(g / result.ceiling.grant_inproc_per_s, 3),
      renew_http_vs_inproc: round(result.http.renew.rps / result.ceiling.renew_inproc_per_s, 3),
      grant_http_vs_sign: round(g / result.ceiling.sign_per_s, 3),
      grant_hot_vs_grant: round(result.http.grant_hot_entitlement.rps / g, 3),
      grant_http_vs_sqlite_commit: round(g / result.ceiling.sqlite_commit_per_s, 3),
    };

    // Bundle import (a separate data dir, after the server is gone).
    log('bundle import…');
    const bundle = await measureBundleImport([EXE, []], work);
    result.import = {
      bulk_100k_s: round(bulkS, 2),
      bundle_100k_s: round(bundle.bundle_100k_s, 2),
      bundle_peak_rss_mb: round(bundle.bundle_peak_rss_mb, 1),
      bundle_export_100k_s: round(bundle.bundle_export_100k_s, 2),
      note: bundle.note,
      bulk_body_mib: round(body.length / 2 ** 20, 1),
      bulk_note:
        'POST /v1/entitlements/import of 100,000 entitlements to the running server (after the load runs): from sending the request to the answer',
      ...(bundle.bundle_sign_s !== undefined
        ? {
            bundle_sign_s: round(bundle.bundle_sign_s, 2),
            bundle_records: bundle.bundle_records,
            bundle_import_answer: bundle.import_answer,
          }
        : {}),
    };
    if (bundle.bundle_100k_s !== null)
      log(
        `bundle import: ${bundle.bundle_100k_s.toFixed(2)} s, peak RSS ${bundle.bundle_peak_rss_mb.toFixed(0)} MB`,
      );
    else log(bundle.note);
    // 4. PostgreSQL (bench/pg.mjs): its own cluster and servers, against this run's SQLite grant figure.
    log('postgres: grants with the server on PostgreSQL, one process and two…');
    try {
      result.postgres = await pgBench({
        T: QUICK ? { warmS: 1, runS: 5 } : { warmS: 2, runS: 10 },
        sqliteGrantRps: result.http.grant.rps,
        log,
      });
    } catch (err) {
      // The SQLite figures are still written; the run then exits 1 (the bench broke).
      pgFailure = err;
      result.postgres = { error: err instanceof Error ? err.message : String(err) };
    }
    result.ratios.pg_two_servers_vs_sqlite_grant =
      result.postgres.two_servers_vs_sqlite_grant ?? null;
    result.memory = {
      idle_rss_mb: round(idle.rss),
      rss_100k_leases_mb: round(withLeases.rss),
      rss_after_prefill_before_load_mb: round(afterPrefill.rss),
      rss_after_bulk_import_mb: round(afterImport.rss),
      server_peak_rss_mb: round(peak),
      note: "VmRSS of the server process (/proc/<pid>/status); rss_100k_leases_mb is taken after the hot-entitlement run (100,000 prefilled leases plus the runs' own)",
    };
    const wall = (performance.now() - started) / 1000;
    result.machine = {
      ...when,
      bench_seconds: round(wall, 0),
      cpu_steal_pct: round(((stealSeconds() - steal0) / (wall * when.cores)) * 100, 1),
    };
    result.targets = evaluateTargets(result);

    const out = join(root, 'bench', 'results');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'latest.json'), `${JSON.stringify(result, null, 2)}\n`);
    printTable(result);
    log(`wrote bench/results/latest.json in ${result.machine.bench_seconds} s`);
    if (pgFailure) throw pgFailure;
  } finally {
    if (server) await server.stop().catch(() => {});
    killStrays();
    if (process.env.BENCH_KEEP === '1') log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (err) {
  killStrays();
  console.error(`bench: failed: ${err instanceof Error ? err.stack : err}`);
  process.exitCode = 1;
}
