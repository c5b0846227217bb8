// The tail run: grants at 64 connections for a minute (the targets of bench/README.md: over a
// 60 s run, WAL checkpoints included, p99.9 under 40 ms and no answer over 100 ms). Long enough for
// the WAL to pass its restart bound many times, so the checkpoints' effect on latency shows.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runJsonChild } from './server.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Reads one gauge from the server's /metrics (null when absent). */
async function gauge(url, name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

/**
 * Grants (new subjects on the 100 bench entitlements) for `durationS` at `connections`, no
 * warm-up (the server is warm from the grant run). Returns the load figures, p99.9 and max
 * included, and the checkpoints the serving thread ran during the run and the longest.
 */
export async function tailRun(server, { durationS, connections }) {
  const locking0 = await gauge(server.url, 'bpls_wal_checkpoints_serving');
  const r = await runJsonChild([
    join(root, 'bench/load.mjs'),
    JSON.stringify({
      url: server.url,
      kind: 'grant',
      connections,
      durationS,
      warmupS: 0,
      tag: 'tail',
    }),
  ]);
  const locking1 = await gauge(server.url, 'bpls_wal_checkpoints_serving');
  return {
    rps: r.rps,
    p50_ms: r.p50_ms,
    p99_ms: r.p99_ms,
    p99_9_ms: r.p99_9_ms,
    max_ms: r.max_ms,
    duration_s: r.duration_s,
    connections: r.connections,
    requests_2xx: r.requests_2xx,
    requests_sent: r.requests_sent,
    non_2xx: r.non_2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    checkpoints_serving: locking0 !== null && locking1 !== null ? locking1 - locking0 : null,
    checkpoint_serving_max_ms: await gauge(server.url, 'bpls_wal_checkpoint_serving_max_ms'),
    wal_bytes_end: await gauge(server.url, 'bpls_wal_bytes'),
    note: 'grants at 64 connections with WAL checkpoints on their own thread; checkpoints_serving counts the short checkpoints the serving thread ran (the last frames before each WAL restart) during the run; checkpoint_serving_max_ms is the longest since start',
  };
}
