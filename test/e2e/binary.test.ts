// The single executable, alone in an empty folder, under an empty environment: no node_modules, no
// PATH, no HOME. It must initialise, serve, answer the admin API and stop cleanly on SIGTERM.
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { killStrays, ROOT, runProcess, startServe } from '../spawn.ts';
import { verifyLeaseToken } from '../../clients/typescript/src/index.ts';

const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
};
const EXE: [string, string[]] = ['./bp-license-server', []];
let dir: string;
const inDir = () => ({ cwd: dir, env: {} });

beforeAll(() => {
  // The global setup has just built dist/bp-license-server from the current sources.
  dir = mkdtempSync(path.join(tmpdir(), 'bpls-binary-'));
  copyFileSync(path.join(ROOT, 'dist', 'bp-license-server'), path.join(dir, 'bp-license-server'));
}, 180_000);

afterAll(() => {
  killStrays();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('single executable, alone, with an empty environment', () => {
  test('--version', async () => {
    const r = await runProcess(EXE, ['--version'], inDir());
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(version);
  });

  test('init, serve, admin API, SIGTERM', async () => {
    const init = await runProcess(EXE, ['init', '--data-dir', './data', '--json'], inDir());
    expect(init.code, init.stderr).toBe(0);
    const created = JSON.parse(init.stdout) as Record<string, unknown>;
    expect(created).toMatchObject({
      server_id: expect.any(String),
      public_key: expect.stringMatching(/^k4\.public\./),
      admin_token: expect.stringMatching(/^bpls_/),
    });
    const token = created.admin_token as string;

    const started = performance.now();
    const server = await startServe(
      EXE,
      ['--data-dir', './data', '--host', '127.0.0.1', '--port', '0'],
      inDir(),
    );
    expect(server.firstLine).toMatch(/^listening on http:\/\/127\.0\.0\.1:\d+$/);
    const health = await fetch(`${server.base}/healthz`);
    const firstAnswerMs = performance.now() - started;
    expect(health.status).toBe(200);
    await health.arrayBuffer();
    console.log(
      `single executable: "listening" after ${Math.round(server.listeningMs)} ms, first /healthz answer after ${Math.round(firstAnswerMs)} ms`,
    );

    const auth = { authorization: `Bearer ${token}` };
    const post = await fetch(`${server.base}/v1/entitlements`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({
        tenant_id: 'local-tenant-id',
        product_id: 'your-product-id',
        policy_json: { type: 'concurrent', max_seats: 10 },
        starts_at: '2024-01-01T00:00:00Z',
        ends_at: '2099-12-31T23:59:59Z',
      }),
    });
    const postText = await post.text();
    expect(post.status, postText).toBe(201);
    const entitlementId = (JSON.parse(postText) as { entitlement_id: string }).entitlement_id;
    expect(entitlementId).toMatch(/^ent_/);

    const get = await fetch(`${server.base}/v1/entitlements/${entitlementId}`, { headers: auth });
    const getText = await get.text();
    expect(get.status, getText).toBe(200);
    expect((JSON.parse(getText) as { entitlement_id: string }).entitlement_id).toBe(entitlementId);

    // A client leases on it and verifies the token offline with the published key.
    const leased = await fetch(`${server.base}/v1/license/lease`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        product_id: 'your-product-id',
        tenant_id: 'local-tenant-id',
        subject_type: 'user',
        subject_id: 'user_123',
      }),
    });
    expect(leased.status).toBe(201);
    const lease = (await leased.json()) as { lease_id: string; token: string };
    const keys = await (await fetch(`${server.base}/v1/license/keys`)).json();
    expect(
      verifyLeaseToken(lease.token, keys as never, { productId: 'your-product-id' }),
    ).toMatchObject({ jti: lease.lease_id, sub: 'user:user_123', entitlementId });

    const end = await server.stop();
    expect(end, `stderr: ${server.stderr()}`).toEqual({ code: 0, signal: null });
    expect(server.extraStdout).toEqual([]);
  }, 60_000);

  test('unpacks its SQLite engine once, and replaces a cached copy that was altered', async () => {
    const cache = path.join(dir, 'engine-cache');
    const list = () =>
      runProcess(
        EXE,
        ['--data-dir', './data', '--native-cache-dir', cache, 'tokens', 'list', '--json'],
        inDir(),
      );
    const first = await list();
    expect(first.code, first.stderr).toBe(0);
    const files = readdirSync(cache).filter((f) => f.endsWith('.node'));
    expect(files).toHaveLength(1);
    const file = path.join(cache, files[0]!);
    const original = readFileSync(file);
    // The file is named by the engine's hash, which the build recorded.
    expect(files[0]).toBe(
      `better_sqlite3-${createHash('sha256').update(original).digest('hex').slice(0, 16)}.node`,
    );

    writeFileSync(
      file,
      Buffer.concat([original.subarray(0, 1000), Buffer.from('tampered'), original.subarray(1008)]),
    );
    const again = await list();
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(file).equals(original)).toBe(true);
  }, 60_000);

  test('checkpoints the WAL on its own thread, the SQLite engine loaded there too', async () => {
    // Its own data dir: the test above stopped its server, this one reads its log at debug level.
    const init = await runProcess(EXE, ['init', '--data-dir', './ckpt-data', '--json'], inDir());
    expect(init.code, init.stderr).toBe(0);
    const created = await runProcess(
      EXE,
      // prettier-ignore
      ['entitlements', 'create', '--tenant', 't', '--product', 'p', '--type', 'concurrent', '--max-seats', '100000',
        '--starts', '2024-01-01T00:00:00Z', '--ends', '2099-12-31T23:59:59Z', '--data-dir', './ckpt-data', '--json'],
      inDir(),
    );
    expect(created.code, created.stderr).toBe(0);
    const server = await startServe(
      EXE,
      ['--data-dir', './ckpt-data', '--host', '127.0.0.1', '--port', '0', '--log-level', 'debug'],
      inDir(),
    );
    // An idle server runs no checkpoint thread; grants grow the WAL past 1 MiB and start it. Its
    // first round cuts the WAL: only a thread that loaded the SQLite engine can say so.
    expect(await (await fetch(`${server.base}/metrics`)).text()).toMatch(
      /^bpls_wal_checkpoint_thread 0$/m,
    );
    const end = performance.now() + 20_000;
    for (let i = 0; !server.stderr().includes('"WAL truncated"') && performance.now() < end; i++) {
      const r = await fetch(`${server.base}/v1/license/lease`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          product_id: 'p',
          tenant_id: 't',
          subject_type: 'user',
          subject_id: `u${i}`,
        }),
      });
      expect(r.status).toBe(201);
      await r.arrayBuffer();
    }
    expect(server.stderr()).toContain('"WAL truncated"');
    const metrics = await (await fetch(`${server.base}/metrics`)).text();
    expect(metrics).toMatch(/^bpls_wal_checkpoint_thread 1$/m);
    expect(metrics).toMatch(/^bpls_wal_truncates [1-9]/m);
    expect(server.stderr()).not.toContain('checkpoints run in commits again');
    expect(await server.stop()).toEqual({ code: 0, signal: null });
  }, 60_000);
});
