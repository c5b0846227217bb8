// CPU profile of the server under one kind of load, summarised by self time.
//
//   node bench/profile.mjs [grant|renew|grant_hot] [seconds=10]
//
// The single executable ignores NODE_OPTIONS, so this runs the same bundle, dist/cli.cjs (copied to
// bench/.build/ first, so a concurrent rebuild cannot change it under the profile), as
// `node --cpu-prof … serve` on a fresh data dir, provisions the bench's entitlements, applies the
// load from a separate process (bench/load.mjs), stops the server (SIGTERM: the profile is written
// at exit) and prints the top functions and modules by self time. Needs `make build` (or
// `make bench`) to have produced dist/cli.cjs.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildInproc } from './lib/build-inproc.mjs';
import {
  adminApi,
  cpuSeconds,
  initDataDir,
  killStrays,
  runJsonChild,
  startServer,
} from './lib/server.mjs';
import { HOT_PREFILL, provisionItems } from './lib/shapes.mjs';
import { summarize } from './lib/profile-summary.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const kind = process.argv[2] ?? 'grant';
const seconds = Number(process.argv[3] ?? 10);
if (!['grant', 'renew', 'grant_hot'].includes(kind) || !(seconds > 0 && seconds <= 120)) {
  console.error('usage: node bench/profile.mjs [grant|renew|grant_hot] [seconds (1-120)]');
  process.exit(2);
}

const work = mkdtempSync(join(os.tmpdir(), 'bpls-profile-'));
const profDir = join(root, 'bench', 'results', 'profiles');
mkdirSync(join(root, 'bench', '.build'), { recursive: true });
const cli = join(root, 'bench', '.build', 'cli-profiled.cjs');
copyFileSync(join(root, 'dist', 'cli.cjs'), cli);
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const outDir = join(profDir, `${kind}-${stamp}`);
mkdirSync(outDir, { recursive: true });

try {
  const dataDir = join(work, 'data');
  const { admin_token: token } = initDataDir([process.execPath, [cli]], dataDir);
  const server = await startServer(
    [process.execPath, ['--cpu-prof', '--cpu-prof-dir', outDir, cli]],
    dataDir,
    { logFile: join(work, 'server.log') },
  );
  const api = adminApi(server.url, token);
  const prov = await api.post('/v1/entitlements/import', { entitlements: provisionItems() });
  const ids = prov.items.map((x) => x.entitlement_id);
  const extra = {};
  if (kind === 'renew') {
    // Leases to renew, written straight into the database (so the profile holds renewals only).
    await buildInproc();
    await runJsonChild([
      join(root, 'bench/inproc.mjs'),
      'populate',
      JSON.stringify({ dataDir, entitlementId: ids[0], count: 10_000 }),
    ]);
    const leaseIds = [];
    let cursor = null;
    for (let page = 0; page < 20 && leaseIds.length < 10_000; page++) {
      const r = await api.get(
        `/v1/leases?entitlement_id=${ids[0]}&limit=500${cursor ? `&cursor=${cursor}` : ''}`,
      );
      leaseIds.push(...r.data.map((l) => l.lease_id));
      cursor = r.next_cursor;
      if (!cursor) break;
    }
    extra.leaseIdsFile = join(work, 'ids.json');
    writeFileSync(extra.leaseIdsFile, JSON.stringify(leaseIds));
  } else if (kind === 'grant_hot') {
    await buildInproc();
    await runJsonChild([
      join(root, 'bench/inproc.mjs'),
      'populate',
      JSON.stringify({ dataDir, entitlementId: ids.at(-1), count: HOT_PREFILL }),
    ]);
  }
  const cpu0 = cpuSeconds(server.pid);
  const t0 = performance.now();
  const r = await runJsonChild([
    join(root, 'bench/load.mjs'),
    JSON.stringify({
      url: server.url,
      kind,
      connections: 64,
      durationS: seconds,
      warmupS: 0,
      tag: `prof-${stamp}`,
      ...extra,
    }),
  ]);
  const cpu = ((cpuSeconds(server.pid) - cpu0) / ((performance.now() - t0) / 1000)) * 100;
  const stop = await server.stop();
  if (stop.code !== 0) throw new Error(`server exited ${stop.code ?? stop.signal}`);
  console.log(
    `${kind}: ${Math.round(r.rps)} rps, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms, ${r.non_2xx + r.errors + r.timeouts} failed; server CPU ${Math.round(cpu)} % (node --cpu-prof, not the executable)\n`,
  );
  const file = readdirSync(outDir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(outDir, f))[0];
  if (!file) throw new Error(`no .cpuprofile in ${outDir}`);
  console.log(summarize(file, { top: 35, bundle: cli }));
  console.log(
    `\nprofile: ${file} (open in Chrome DevTools > Performance); the whole server life, load included`,
  );
} catch (err) {
  console.error(`profile: failed: ${err instanceof Error ? err.stack : err}`);
  process.exitCode = 1;
} finally {
  killStrays();
  rmSync(work, { recursive: true, force: true });
}
