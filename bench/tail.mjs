// The tail run alone (bench/lib/tail.mjs), against dist/bp-license-server on a fresh data dir:
//
//   node bench/tail.mjs            60 s
//   BENCH_TAIL_S=15 node bench/tail.mjs
//
// Prints the figures as JSON. make bench runs the same measurement inside bench/run.mjs.
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { adminApi, initDataDir, killStrays, startServer } from './lib/server.mjs';
import { provisionItems } from './lib/shapes.mjs';
import { tailRun } from './lib/tail.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const EXE = join(root, 'dist', 'bp-license-server');
const durationS = Number(process.env.BENCH_TAIL_S ?? 60);

if (!existsSync(EXE)) throw new Error(`${EXE} is missing: node scripts/build-binary.mjs`);
const work = mkdtempSync(join(os.tmpdir(), 'bpls-tail-'));
let server;
try {
  const dataDir = join(work, 'data');
  const { admin_token: token } = initDataDir([EXE, []], dataDir);
  server = await startServer([EXE, []], dataDir, { logFile: join(work, 'server.log') });
  await adminApi(server.url, token).post('/v1/entitlements/import', {
    entitlements: provisionItems(),
  });
  const r = await tailRun(server, { durationS, connections: 64 });
  console.log(JSON.stringify(r, null, 2));
} finally {
  if (server) await server.stop().catch(() => {});
  killStrays();
  if (process.env.BENCH_KEEP === '1') console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
