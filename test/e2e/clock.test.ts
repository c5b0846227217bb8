// The clock guard in the real executable, with its wall clock stepped while it runs: libfaketime
// (Debian's `faketime` package) preloaded, reading its offset from a file on every call
// (FAKETIME_NO_CACHE), and leaving the monotonic clock alone as a real NTP step does
// (FAKETIME_DONT_FAKE_MONOTONIC). The test's own process keeps the true time.
import Database from 'better-sqlite3';
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killStrays, ROOT, runProcess, startServe, type ServeHandle } from '../spawn.ts';
import { vendorSignArgs } from './world.ts';

const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';
const EXE: [string, string[]] = ['./bp-license-server', []];

let root: string;
let offsetFile: string;
let vendor: { public_key: string; secret_key_file: string };
let server: ServeHandle | undefined;

/** The environment of a process whose wall clock reads the offset in offsetFile ("+0", "-2h", "+62m"). */
const faked = () => ({
  LD_PRELOAD: LIBFAKETIME,
  FAKETIME_TIMESTAMP_FILE: offsetFile,
  FAKETIME_NO_CACHE: '1',
  FAKETIME_DONT_FAKE_MONOTONIC: '1',
});
const setOffset = (offset: string) => writeFileSync(offsetFile, `${offset}\n`);

async function ok(args: string[], fake = false): Promise<any> {
  const r = await runProcess(EXE, [...args, '--json'], { cwd: root, env: fake ? faked() : {} });
  expect(r.code, `${args.join(' ')}: ${r.stderr}${r.stdout}`).toBe(0);
  return JSON.parse(r.stdout);
}

/** A data dir with the vendor key pinned, a bundle-managed entitlement (acme/cad) and a manual one (acme/cam). */
async function prepare(
  name: string,
): Promise<{ dataDir: string; token: string; manualId: string }> {
  const dataDir = path.join(root, name);
  setOffset('+0');
  const init = await ok(['init', '--data-dir', dataDir, '--vendor-key', vendor.public_key], true);
  const content = path.join(root, `${name}-content.json`);
  writeFileSync(
    content,
    JSON.stringify({
      entitlements: [
        {
          entitlement_id: 'ent_cad',
          tenant_id: 'acme',
          product_id: 'cad',
          policy_json: { type: 'concurrent', max_seats: 50 },
          starts_at: '2024-01-01T00:00:00Z',
          ends_at: '2099-01-01T00:00:00Z',
          rev: 1,
        },
      ],
    }),
  );
  const bundle = path.join(root, `${name}-b1.bpsync`);
  await ok(
    vendorSignArgs({
      key: vendor.secret_key_file,
      serverId: init.server_id,
      seq: 1,
      in: content,
      out: bundle,
    }),
  );
  await ok(['sync', 'import', bundle, '--data-dir', dataDir], true);
  const manual = await ok(
    [
      'entitlements',
      'create',
      '--data-dir',
      dataDir,
      '--tenant',
      'acme',
      '--product',
      'cam',
      '--type',
      'concurrent',
      '--max-seats',
      '50',
      '--starts',
      '2024-01-01T00:00:00Z',
      '--ends',
      '2099-01-01T00:00:00Z',
    ],
    true,
  );
  return { dataDir, token: init.admin_token, manualId: manual.entitlement_id };
}

function serve(dataDir: string): Promise<ServeHandle> {
  return startServe(
    EXE,
    [
      '--data-dir',
      dataDir,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--sync-dir',
      path.join(root, `${path.basename(dataDir)}-sync`),
    ],
    { cwd: root, env: faked() },
  );
}

async function call(
  method: string,
  url: string,
  body?: unknown,
  token?: string,
): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> =
    body === undefined ? {} : { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${server!.base}${url}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text.startsWith('{') ? JSON.parse(text) : text };
}
const lease = (product: 'cad' | 'cam', subject: string) =>
  call('POST', '/v1/license/lease', {
    tenant_id: 'acme',
    product_id: product,
    subject_type: 'user',
    subject_id: subject,
  });

/** What the database holds: the clock events and the clock audit rows, read beside the running server. */
function recorded(dataDir: string): { events: string[]; audit: string[]; hwmIntegers: boolean } {
  const db = new Database(path.join(dataDir, 'license.db'), { readonly: true });
  try {
    const events = db.prepare('SELECT kind, hwm FROM clock_events ORDER BY seq').all() as Array<{
      kind: string;
      hwm: number;
    }>;
    const audit = db
      .prepare("SELECT action FROM audit_log WHERE action LIKE 'clock.%' ORDER BY seq")
      .pluck()
      .all() as string[];
    return {
      events: events.map((e) => e.kind),
      audit,
      hwmIntegers: events.every((e) => Number.isInteger(e.hwm)),
    };
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  expect(existsSync(LIBFAKETIME), `${LIBFAKETIME} is missing: apt-get install -y faketime`).toBe(
    true,
  );
  // dist/bp-license-server: built by the global setup from the current sources.
  root = mkdtempSync(path.join(tmpdir(), 'bpls-clock-e2e-'));
  copyFileSync(path.join(ROOT, 'dist', 'bp-license-server'), path.join(root, 'bp-license-server'));
  offsetFile = path.join(root, 'faketime.offset');
  setOffset('+0');
  vendor = await ok(['vendor', 'keygen', '--out', path.join(root, 'vendor')]);
}, 180_000);

afterAll(async () => {
  await server?.stop();
  killStrays();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('the executable under libfaketime', () => {
  it('the preloaded clock moves the server wall clock while it runs', async () => {
    const { dataDir } = await prepare('probe');
    setOffset('-2h');
    server = await serve(dataDir);
    const r = await fetch(`${server.base}/healthz`);
    const served = Date.parse(r.headers.get('date')!);
    await r.arrayBuffer();
    // Node's Date header says the process's time: two hours behind ours.
    expect(Date.now() - served).toBeGreaterThan(2 * 3_600_000 - 120_000);
    expect(Date.now() - served).toBeLessThan(2 * 3_600_000 + 120_000);
    expect(await server.stop()).toEqual({ code: 0, signal: null });
    server = undefined;
    setOffset('+0');
  });

  it('a 2 h step back while running: no 500; bundle-managed 503 clock_suspect, manual 201; recorded once, across a restart inside the episode; closed once', async () => {
    const { dataDir, token } = await prepare('stepback');
    setOffset('+0');
    server = await serve(dataDir);
    const b1 = await lease('cad', 'u1');
    expect(b1.status).toBe(201);
    expect((await lease('cam', 'u1')).status).toBe(201);

    setOffset('-2h');
    const refused = await lease('cad', 'u2');
    expect(refused.status, JSON.stringify(refused.body)).toBe(503);
    expect(refused.body.error).toMatchObject({
      code: 'clock_suspect',
      details: { entitlement_id: 'ent_cad' },
    });
    expect((await lease('cad', 'u3')).status).toBe(503);
    expect((await lease('cam', 'u2')).status).toBe(201);
    expect(
      (await call('POST', '/v1/license/lease/renew', { lease_id: b1.body.lease_id })).body.error
        .code,
    ).toBe('clock_suspect');
    expect(
      (await call('POST', '/v1/license/lease/release', { lease_id: b1.body.lease_id })).status,
    ).toBe(200);
    expect(await call('GET', '/readyz')).toMatchObject({
      status: 503,
      body: { status: 'clock_suspect' },
    });
    expect(recorded(dataDir)).toEqual({
      events: ['suspect'],
      audit: ['clock.suspect'],
      hwmIntegers: true,
    });

    // Restarted inside the episode: still refused, not recorded again.
    expect(await server.stop()).toEqual({ code: 0, signal: null });
    server = await serve(dataDir);
    expect((await lease('cad', 'u4')).status).toBe(503);
    expect((await lease('cam', 'u4')).status).toBe(201);
    expect(recorded(dataDir)).toEqual({
      events: ['suspect'],
      audit: ['clock.suspect'],
      hwmIntegers: true,
    });

    // The clock is stepped forward again while it runs: the first grant is served, the episode closes once.
    setOffset('+0');
    expect((await lease('cad', 'u5')).status).toBe(201);
    expect((await lease('cad', 'u6')).status).toBe(201);
    expect(await call('GET', '/readyz')).toMatchObject({ status: 200, body: { status: 'ready' } });
    const audit = await call('GET', '/v1/audit?limit=500', undefined, token);
    expect(
      audit.body.data
        .filter((r: any) => String(r.action).startsWith('clock.'))
        .map((r: any) => r.action),
    ).toEqual(['clock.suspect', 'clock.recovered']);
    expect(await server.stop()).toEqual({ code: 0, signal: null });
    server = undefined;
    expect(recorded(dataDir)).toEqual({
      events: ['suspect', 'recovered'],
      audit: ['clock.suspect', 'clock.recovered'],
      hwmIntegers: true,
    });
    expect(server).toBeUndefined();
  });

  it('a restart after the clock was fixed closes the episode at start, once', async () => {
    const { dataDir } = await prepare('fixed-while-down');
    server = await serve(dataDir);
    expect((await lease('cad', 'u1')).status).toBe(201);
    setOffset('-3h');
    expect((await lease('cad', 'u2')).status).toBe(503);
    await server.stop();
    setOffset('+0');
    server = await serve(dataDir);
    expect(recorded(dataDir).events).toEqual(['suspect', 'recovered']);
    expect((await lease('cad', 'u2')).status).toBe(201);
    await server.stop();
    server = await serve(dataDir);
    expect((await lease('cad', 'u3')).status).toBe(201);
    await server.stop();
    server = undefined;
    expect(recorded(dataDir).events).toEqual(['suspect', 'recovered']);
  });

  it('booted 62 min fast and corrected before granting anything: never a 503', async () => {
    const { dataDir } = await prepare('fastboot');
    setOffset('+62m');
    server = await serve(dataDir);
    expect(await call('GET', '/readyz')).toMatchObject({ status: 200 });
    await new Promise((r) => setTimeout(r, 500));
    setOffset('+0');
    for (const s of ['u1', 'u2', 'u3']) expect((await lease('cad', s)).status).toBe(201);
    expect((await lease('cam', 'u1')).status).toBe(201);
    expect(await call('GET', '/readyz')).toMatchObject({ status: 200, body: { status: 'ready' } });
    await server.stop();
    server = undefined;
    expect(recorded(dataDir)).toEqual({ events: [], audit: [], hwmIntegers: true });
  });
});
