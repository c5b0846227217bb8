// A 100,000-record bundle through the real CLI: the import applies every record, the export
// reports all 100,000 entitlements, and SIGKILL in the middle of the import's stepwise apply
// leaves a state the next import or `serve` at start finishes. (Its time and memory are `make
// bench` figures.)
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, killStrays, runProcess, startServe } from '../spawn.ts';
import { verifyExport } from '../../src/sync/vendor.ts';
import { writeBigSnapshot } from '../big-bundle.ts';
import { openStore } from '../../src/storage/store.ts';
import { copyDataDir as copyOf, initDataDir, vendorKeygen } from './world.ts';

const N = 100_000;

let root: string;
let template: string;
let serverId: string;
let publicKey: string;
let bigBundle: string;

const cli = (args: string[]) => runProcess(CLI, args, { cwd: root, timeoutMs: 60_000 });

const copyDataDir = (name: string) => copyOf(template, path.join(root, name));

function bundleCount(dataDir: string): {
  entitlements: number;
  imports: number;
  integrity: string;
  applying: boolean;
  audited: number;
} {
  const store = openStore(path.join(dataDir, 'license.db'), { mustExist: true });
  try {
    const n = (
      store.db.prepare("SELECT count(*) AS n FROM entitlements WHERE source = 'bundle'").get() as {
        n: number;
      }
    ).n;
    const imports = (
      store.db.prepare('SELECT count(*) AS n FROM sync_imports').get() as { n: number }
    ).n;
    const integrity = store.db.pragma('integrity_check', { simple: true }) as string;
    const applying = store.state.get('sync_import_applying') !== undefined;
    const audited = (
      store.db
        .prepare("SELECT count(*) AS n FROM audit_log WHERE action = 'sync.import'")
        .get() as { n: number }
    ).n;
    return { entitlements: n, imports, integrity, applying, audited };
  } finally {
    store.close();
  }
}

/**
 * What a kill may leave: the old state, the new one, or the bundle accepted and part-applied with
 * its marker (the next import or `serve` at start finishes it). Never a part-applied state
 * without the marker that gets it finished.
 */
function expectOldNewOrResumable(c: ReturnType<typeof bundleCount>, what: string): void {
  expect(c.integrity, what).toBe('ok');
  const settled = [
    { entitlements: 0, imports: 0, applying: false, audited: 0 },
    { entitlements: N, imports: 1, applying: false, audited: 1 },
  ];
  if (c.applying)
    expect({ imports: c.imports, audited: c.audited }, what).toEqual({ imports: 1, audited: 0 });
  else
    expect(settled, what).toContainEqual({
      entitlements: c.entitlements,
      imports: c.imports,
      applying: c.applying,
      audited: c.audited,
    });
}

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'bpls-sync-big-'));
  template = path.join(root, 'template');
  const vendor = await vendorKeygen(root, path.join(root, 'vendor'));
  ({ server_id: serverId, public_key: publicKey } = await initDataDir(root, template, [
    '--vendor-key',
    vendor.public_key,
  ]));
  bigBundle = writeBigSnapshot(
    vendor.secret_key_file,
    serverId,
    N,
    path.join(root, 'big.bpsync'),
    6,
  );
}, 120_000);
afterAll(() => {
  killStrays();
  rmSync(root, { recursive: true, force: true });
});

describe('a 100,000-record bundle', () => {
  // How fast and in how much memory is a figure of `make bench` (import.bundle_100k_s,
  // bundle_peak_rss_mb, bundle_export_100k_s, with their targets), not an assertion here: on a
  // shared CI machine a wall-clock limit tests the neighbours, not the code.
  it('imports all 100,000 records, then exports all 100,000 entitlements in a signed report', async () => {
    const dir = copyDataDir('measured');
    const r = await cli(['sync', 'import', bigBundle, '--data-dir', dir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'applied', seq: 1, added: N });
    expect(bundleCount(dir)).toEqual({
      entitlements: N,
      imports: 1,
      integrity: 'ok',
      applying: false,
      audited: 1,
    });
    const exported = await cli([
      'sync',
      'export',
      '--data-dir',
      dir,
      '--out',
      path.join(root, 'outbox'),
      '--json',
    ]);
    expect(exported.code, exported.stderr).toBe(0);
    const file = JSON.parse(exported.stdout).file as string;
    const summary = await verifyExport(file, publicKey);
    expect(summary.usage.entitlements).toBe(N);
  }, 60_000);

  it('killed with SIGKILL in the middle of its apply leaves the bundle accepted with its marker; run again, it finishes all of it', async () => {
    const dir = copyDataDir('killed');
    const wal = path.join(dir, 'license.db-wal');
    const child = spawn(CLI[0], [...CLI[1], 'sync', 'import', bigBundle, '--data-dir', dir], {
      cwd: root,
      stdio: 'ignore',
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    // The apply's steps grow the WAL: once it holds megabytes, the import is mid-apply. Kill it there.
    let walAtKill = 0;
    for (;;) {
      if (child.exitCode !== null) break;
      const size = existsSync(wal) ? statSync(wal).size : 0;
      if (size > 4 << 20) {
        walAtKill = size;
        child.kill('SIGKILL');
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    const end = await exited;
    expect(end.signal, 'the import finished before it could be killed mid-apply').toBe('SIGKILL');
    expect(walAtKill).toBeGreaterThan(4 << 20);
    const mid = bundleCount(dir);
    expect(mid).toMatchObject({ imports: 1, integrity: 'ok', applying: true, audited: 0 });
    expect(mid.entitlements).toBeLessThan(N);
    const again = await cli(['sync', 'import', bigBundle, '--data-dir', dir, '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({
      status: 'applied',
      added: N - mid.entitlements,
    });
    expect(bundleCount(dir)).toEqual({
      entitlements: N,
      imports: 1,
      integrity: 'ok',
      applying: false,
      audited: 1,
    });
  }, 60_000);

  it('killed with SIGKILL at other moments leaves the old state, the new, or an accepted apply that `serve` finishes at start', async () => {
    for (const afterMs of [300, 1200, 2400, 3600]) {
      const dir = copyDataDir(`killed-at-${afterMs}`);
      const child = spawn(CLI[0], [...CLI[1], 'sync', 'import', bigBundle, '--data-dir', dir], {
        cwd: root,
        stdio: 'ignore',
      });
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      const timer = setTimeout(() => child.kill('SIGKILL'), afterMs);
      await exited;
      clearTimeout(timer);
      const c = bundleCount(dir);
      expectOldNewOrResumable(c, `killed after ${afterMs} ms`);
      if (!c.applying) continue;
      // `serve` finishes it at start, in steps, while it serves.
      const s = await startServe(CLI, ['--data-dir', dir, '--port', '0', '--no-sync-dir'], {
        cwd: root,
        timeoutMs: 60_000,
      });
      try {
        const health = await fetch(`${s.base}/healthz`);
        expect(health.status).toBe(200);
        const deadline = Date.now() + 45_000;
        while (bundleCount(dir).applying && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 200));
      } finally {
        await s.stop();
      }
      expect(bundleCount(dir), `killed after ${afterMs} ms, then serve`).toEqual({
        entitlements: N,
        imports: 1,
        integrity: 'ok',
        applying: false,
        audited: 1,
      });
    }
  }, 180_000);
});
