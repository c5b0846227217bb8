// The figures, the targets they are held to, and the table printed at the end of a run.

const fmt = (v, digits = 0) =>
  v === null || v === undefined || Number.isNaN(v)
    ? 'n/a'
    : typeof v === 'number'
      ? v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
      : String(v);

/**
 * Every target (bench/README.md, Targets), as { name, value, op, limit, pass }. pass is null when the figure was
 * not measured (e.g. the bundle import is not built yet): not a pass, not a fail.
 */
export function evaluateTargets(r) {
  const t = [];
  const add = (name, value, op, limit) => {
    const pass =
      value === null || value === undefined
        ? null
        : op === '>='
          ? value >= limit
          : op === '<'
            ? value < limit
            : op === '=='
              ? value === limit
              : null;
    t.push({ name, value, op, limit, pass });
  };
  add('grant_http_vs_inproc', r.ratios.grant_http_vs_inproc, '>=', 0.5);
  add('renew_http_vs_inproc', r.ratios.renew_http_vs_inproc, '>=', 0.5);
  add('grant_http_vs_sign', r.ratios.grant_http_vs_sign, '>=', 0.2);
  for (const k of ['grant', 'renew', 'grant_hot_entitlement'])
    add(`${k}.p99_ms`, r.http[k]?.p99_ms, '<', 40);
  add('tail.p99_9_ms (60 s grants)', r.tail?.p99_9_ms, '<', 40);
  add('tail.max_ms (60 s grants)', r.tail?.max_ms, '<', 100);
  add('grant_hot_vs_grant (rps ratio)', r.ratios.grant_hot_vs_grant, '>=', 0.8);
  add('over_grants (all runs)', r.over_grants_total, '==', 0);
  add('http errors/non-2xx (all runs)', r.http_failures_total, '==', 0);
  add('lease bookkeeping consistent', r.bookkeeping?.consistent, '==', true);
  add('import.bulk_100k_s', r.import.bulk_100k_s, '<', 5);
  add('import.bundle_100k_s', r.import.bundle_100k_s, '<', 10);
  add('import.bundle_peak_rss_mb', r.import.bundle_peak_rss_mb, '<', 300);
  add('import.bundle_export_100k_s', r.import.bundle_export_100k_s, '<', 10);
  add('ceiling.strict_json_parse_us (per token)', r.ceiling.strict_json_parse_us, '<', 10);
  add('memory.rss_100k_leases_mb', r.memory.rss_100k_leases_mb, '<', 300);
  add('memory.idle_rss_mb', r.memory.idle_rss_mb, '<', 100);
  add('startup.first_answer_ms', r.startup?.first_answer_ms, '<', 1000);
  add('sdk.ts_verify_per_s', r.sdk?.ts_verify_per_s, '>=', 20_000);
  add('sdk.rust_verify_per_s', r.sdk?.rust_verify_per_s, '>=', 50_000);
  const pg = r.postgres;
  add(
    'postgres: 2 servers vs SQLite grant (rps ratio)',
    r.ratios.pg_two_servers_vs_sqlite_grant,
    '>=',
    0.5,
  );
  add('postgres: over_grants', pg?.over_grants, '==', 0);
  add(
    'postgres: http errors/non-2xx',
    pg?.one_server && pg.two_servers ? pg.one_server.failures + pg.two_servers.failures : null,
    '==',
    0,
  );
  add('postgres: lease bookkeeping consistent', pg?.bookkeeping_consistent, '==', true);
  return t;
}

export function printTable(r) {
  const rows = [];
  const c = r.ceiling;
  const ceil = (label, k) => {
    const b = c.samples?.before_http?.[k];
    const a = c.samples?.after_http?.[k];
    rows.push([
      `ceiling: ${label}`,
      `${fmt(c[k])}${b !== undefined ? `  (before ${fmt(b)}, after ${fmt(a)})` : ''}`,
    ]);
  };
  ceil('Ed25519 sign/s (1 core, 300 B)', 'sign_per_s');
  ceil('Ed25519 sign/s (libuv pool, 64 in flight)', 'sign_async_64_per_s');
  ceil('SQLite commits/s (WAL, FULL)', 'sqlite_commit_per_s');
  ceil('grant in process, sequential/s', 'grant_inproc_seq_per_s');
  ceil('grant in process, 64 in flight/s', 'grant_inproc_64_per_s');
  ceil('renew in process, sequential/s', 'renew_inproc_seq_per_s');
  ceil('renew in process, 64 in flight/s', 'renew_inproc_64_per_s');
  rows.push([
    `ceiling: strict JSON parse of a token's claims (µs, ${fmt(c.strict_json_claims_bytes)} B)`,
    `${fmt(c.strict_json_parse_us, 2)}  (before ${fmt(c.samples?.before_http?.strict_json_parse_us, 2)}, after ${fmt(c.samples?.after_http?.strict_json_parse_us, 2)})`,
  ]);
  for (const k of ['grant', 'renew', 'grant_hot_entitlement']) {
    const h = r.http[k];
    if (!h) continue;
    rows.push([
      `http ${k}: rps / p50 / p99 ms`,
      `${fmt(h.rps)} / ${fmt(h.p50_ms, 1)} / ${fmt(h.p99_ms, 1)}`,
    ]);
    rows.push([
      `http ${k}: server CPU %, loader CPU %`,
      `${fmt(h.server_cpu_pct)} / ${fmt(h.loader_cpu_pct)}`,
    ]);
  }
  if (r.tail) {
    rows.push([
      `http tail (${fmt(r.tail.duration_s)} s grants): p99 / p99.9 / max ms`,
      `${fmt(r.tail.p99_ms, 1)} / ${fmt(r.tail.p99_9_ms, 1)} / ${fmt(r.tail.max_ms, 1)}`,
    ]);
    rows.push([
      'http tail: rps, serving-thread checkpoints (longest ms)',
      `${fmt(r.tail.rps)}, ${fmt(r.tail.checkpoints_serving)} (${fmt(r.tail.checkpoint_serving_max_ms, 1)})`,
    ]);
  }
  rows.push(['import: bulk 100k entitlements (s)', fmt(r.import.bulk_100k_s, 2)]);
  rows.push([
    'import: bundle 100k records (s)',
    r.import.bundle_100k_s === null ? 'n/a (see import.note)' : fmt(r.import.bundle_100k_s, 2),
  ]);
  rows.push([
    'import: bundle peak RSS (MB)',
    r.import.bundle_peak_rss_mb === null ? 'n/a' : fmt(r.import.bundle_peak_rss_mb, 1),
  ]);
  rows.push([
    'import: bundle export of 100k entitlements (s)',
    r.import.bundle_export_100k_s == null ? 'n/a' : fmt(r.import.bundle_export_100k_s, 2),
  ]);
  rows.push(['memory: idle RSS (MB)', fmt(r.memory.idle_rss_mb, 1)]);
  rows.push(['memory: RSS with 100k active leases (MB)', fmt(r.memory.rss_100k_leases_mb, 1)]);
  rows.push(['memory: server peak RSS over the run (MB)', fmt(r.memory.server_peak_rss_mb, 1)]);
  rows.push(['startup: first HTTP answer after spawn (ms)', fmt(r.startup.first_answer_ms)]);
  rows.push([
    'SDK: token verifications/s, TypeScript / Rust (1 core)',
    `${fmt(r.sdk?.ts_verify_per_s)} / ${fmt(r.sdk?.rust_verify_per_s)}`,
  ]);
  rows.push([
    'SDK: Ed25519 verify alone/s, node:crypto / ring (the ceilings)',
    `${fmt(r.sdk?.node_raw_ed25519_verify_per_s)} / ${fmt(r.sdk?.ring_raw_ed25519_verify_per_s)}`,
  ]);
  const pg = r.postgres;
  if (pg?.error) rows.push(['postgres: FAILED', pg.error.split('\n')[0].slice(0, 120)]);
  for (const [label, h] of [
    ['1 server, 64 conn.', pg?.one_server],
    ['2 servers, 2 x 32 conn. (summed)', pg?.two_servers],
  ]) {
    if (!h) continue;
    rows.push([
      `postgres ${label}: rps / p50 / p99 ms`,
      `${fmt(h.rps)} / ${fmt(h.p50_ms, 1)} / ${fmt(h.p99_ms, 1)}`,
    ]);
    rows.push([`postgres ${label}: server CPU %`, h.server_cpu_pct.map((v) => fmt(v)).join(' + ')]);
  }
  rows.push(['machine: CPU stolen by the hypervisor (%)', fmt(r.machine.cpu_steal_pct, 1)]);

  const w = Math.max(...rows.map((x) => x[0].length));
  console.log('\nFigures');
  for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`);

  console.log('\nTargets');
  const tw = Math.max(...r.targets.map((x) => x.name.length));
  for (const t of r.targets) {
    const verdict = t.pass === null ? 'n/a ' : t.pass ? 'PASS' : 'FAIL';
    const val =
      typeof t.value === 'number'
        ? fmt(t.value, Math.abs(t.value) < 10 ? 2 : 1)
        : typeof t.value === 'boolean'
          ? String(t.value)
          : 'not measured';
    console.log(
      `  ${verdict}  ${t.name.padEnd(tw)}  ${val.padStart(12)}  (target ${t.op} ${t.limit})`,
    );
  }
  const failed = r.targets.filter((t) => t.pass === false).length;
  const na = r.targets.filter((t) => t.pass === null).length;
  console.log(`\n${r.targets.length - failed - na} pass, ${failed} fail, ${na} not measured\n`);
}
