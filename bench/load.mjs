// The load generator: autocannon in its own process (a child of bench/run.mjs), so the loader and
// the server never share an event loop. Prints one JSON object on stdout.
//
//   node bench/load.mjs '{"url": "http://127.0.0.1:PORT", "kind": "grant"|"grant_hot"|"renew",
//                         "connections": 64, "durationS": 15, "warmupS": 3, "tag": "g1",
//                         "leaseIdsFile": "/tmp/ids.json"}'
//
// grant / grant_hot: every request a new subject (tag-n); renew: the lease ids of the file, round robin.
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { grantRequest } from './lib/shapes.mjs';

const o = JSON.parse(process.argv[2] ?? '{}');
if (!o.url || !['grant', 'grant_hot', 'renew'].includes(o.kind)) {
  console.error(
    'usage: node bench/load.mjs \'{"url": ..., "kind": "grant|grant_hot|renew", ...}\'',
  );
  process.exit(2);
}

const leaseIds = o.kind === 'renew' ? JSON.parse(readFileSync(o.leaseIdsFile, 'utf8')) : [];
if (o.kind === 'renew' && leaseIds.length === 0) throw new Error('renew needs lease ids');

let n = 0;
function body() {
  const i = n++;
  if (o.kind === 'renew') return JSON.stringify({ lease_id: leaseIds[i % leaseIds.length] });
  return JSON.stringify(grantRequest(i, o.tag, o.kind === 'grant_hot'));
}

const path = o.kind === 'renew' ? '/v1/license/lease/renew' : '/v1/license/lease';

function run(durationS) {
  return new Promise((resolve, reject) => {
    const inst = autocannon(
      {
        url: o.url,
        connections: o.connections ?? 64,
        duration: durationS,
        timeout: 10,
        requests: [
          {
            method: 'POST',
            path,
            headers: { 'content-type': 'application/json' },
            setupRequest: (req) => {
              req.body = body();
              return req;
            },
          },
        ],
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
    // Bounded: autocannon stops itself after `duration`; this only guards against a hang.
    const guard = setTimeout(() => inst.stop(), (durationS + 30) * 1000);
    guard.unref();
  });
}

const cpu0 = process.cpuUsage();
const warm = o.warmupS > 0 ? await run(o.warmupS) : null;
const cpu1 = process.cpuUsage();
const t0 = performance.now();
const r = await run(o.durationS ?? 15);
const wall = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu1);

const statusCodes = {};
for (const [code, v] of Object.entries(r.statusCodeStats ?? {})) statusCodes[code] = v.count;
const out = {
  kind: o.kind,
  connections: r.connections,
  duration_s: r.duration,
  rps: r['2xx'] / r.duration,
  p50_ms: r.latency.p50,
  p90_ms: r.latency.p90,
  p99_ms: r.latency.p99,
  p99_9_ms: r.latency.p99_9,
  mean_ms: r.latency.average,
  max_ms: r.latency.max,
  requests_2xx: r['2xx'],
  non_2xx: r.non2xx,
  errors: r.errors,
  timeouts: r.timeouts,
  status_codes: statusCodes,
  warmup_2xx: warm ? warm['2xx'] : 0,
  warmup_non_2xx: warm ? warm.non2xx + warm.errors + warm.timeouts : 0,
  requests_sent: n,
  loader_cpu_pct: ((cpu.user + cpu.system) / 1e6 / wall) * 100,
  warmup_loader_cpu_s: (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / 1e6,
};
process.stdout.write(`${JSON.stringify(out)}\n`);
