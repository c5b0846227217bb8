// The TypeScript SDK, built (clients/typescript/dist, as a vendor's application imports it), against
// the real executable (dist/bp-license-server): grant, offline verification, renewal, failover,
// restart, server gone, release at exit (a child process on the system's Node when it has one),
// revocation. The global setup builds both.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { killStrays, ROOT, runProcess, startServe, type ServeHandle } from '../../../test/spawn.ts';
import type * as Sdk from '../src/index.ts';

const EXE: [string, string[]] = [path.join(ROOT, 'dist', 'bp-license-server'), []];
const SDK_DIST = path.join(ROOT, 'clients', 'typescript', 'dist', 'index.js');
const EXAMPLE = path.join(ROOT, 'clients', 'typescript', 'examples', 'lease.mjs');
const { LicenseClient, LicenseError, Subject, TokenError, verifyLeaseToken } = (await import(
  SDK_DIST
)) as typeof Sdk;

let dir: string;
let token: string;
let port: number;
let server: ServeHandle;
const base = () => `http://127.0.0.1:${port}`;
const TERM = { starts_at: '2020-01-01T00:00:00Z', ends_at: '2099-12-31T23:59:59Z' };

async function admin(
  method: string,
  p: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base()}${p}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function entitlement(tenant: string, policy: Record<string, unknown>): Promise<string> {
  const r = await admin('POST', '/v1/entitlements', {
    tenant_id: tenant,
    product_id: 'cad',
    policy_json: policy,
    ...TERM,
  });
  expect(r.status).toBe(201);
  return r.body.entitlement_id as string;
}

async function activeLeaseIds(): Promise<string[]> {
  const r = await admin('GET', '/v1/leases?limit=500');
  return (r.body.data as Array<{ lease_id: string }>).map((l) => l.lease_id);
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

const serveHere = () =>
  startServe(
    EXE,
    ['--data-dir', path.join(dir, 'data'), '--host', '127.0.0.1', '--port', String(port)],
    { env: { PATH: process.env.PATH ?? '' } },
  );
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'bpls-sdk-ts-'));
  const init = await runProcess(EXE, ['init', '--data-dir', path.join(dir, 'data'), '--json']);
  expect(init.code, init.stderr).toBe(0);
  token = (JSON.parse(init.stdout) as { admin_token: string }).admin_token;
  port = await freePort();
  server = await serveHere();
  await entitlement('acme', {
    type: 'concurrent',
    max_seats: 20,
    lease_ttl_seconds: 5,
    features: ['modeling', 'render'],
  });
  await entitlement('solo', { type: 'concurrent', max_seats: 1, lease_ttl_seconds: 600 });
});

afterAll(async () => {
  await server?.stop();
  killStrays();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('TypeScript SDK against the executable', () => {
  test('requests a lease whose token verifies offline with the published keys', async () => {
    const client = new LicenseClient({ urls: base(), releaseOnExit: false });
    const lease = await client.requestLease({
      product: 'cad',
      tenant: 'acme',
      subject: Subject.user('alice'),
      features: ['render'],
    });
    expect(lease.state).toBe('active');
    expect(lease.valid).toBe(true);
    expect(lease.claims).toMatchObject({
      aud: 'cad',
      tenantId: 'acme',
      jti: lease.id,
      subjectType: 'user',
      subjectId: 'alice',
      features: ['render'],
    });
    expect(lease.expiresAt.getTime() - Date.now()).toBeLessThanOrEqual(5000);
    expect(await activeLeaseIds()).toContain(lease.id);

    // Anyone holding the keys checks the token without the server; a changed byte fails.
    const keys = await client.keys();
    expect(verifyLeaseToken(lease.token, keys, { productId: 'cad' }).jti).toBe(lease.id);
    const last = lease.token.at(-1) === 'A' ? 'B' : 'A';
    expect(() => verifyLeaseToken(`${lease.token.slice(0, -1)}${last}`, keys)).toThrow(TokenError);
    await lease.release();
  });

  test("refusals carry the server's code, status, details and request id", async () => {
    const client = new LicenseClient({ urls: base(), releaseOnExit: false });
    const first = await client.requestLease({
      product: 'cad',
      tenant: 'solo',
      subject: Subject.user('u1'),
    });
    const err = await client
      .requestLease({ product: 'cad', tenant: 'solo', subject: Subject.user('u2') })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LicenseError);
    expect(err).toMatchObject({
      code: 'seats_exhausted',
      status: 409,
      url: base(),
      retryable: false,
    });
    expect((err as Sdk.LicenseError).requestId).toMatch(/^req_/);
    const missing = await client
      .requestLease({ product: 'nothing', tenant: 'solo', subject: Subject.user('u2') })
      .catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 'not_found', status: 404 });
    await first.release();
  });

  test('keeps a 5 s lease alive for 20 s under one lease id', async () => {
    const client = new LicenseClient({ urls: base(), releaseOnExit: false });
    const lease = await client.requestLease({
      product: 'cad',
      tenant: 'acme',
      subject: Subject.user('keeper'),
    });
    let renewed = 0;
    lease.on('renewed', () => renewed++);
    const firstExp = lease.expiresAt.getTime();
    await sleep(20_000);
    expect(lease.valid).toBe(true);
    expect(lease.state).toBe('active');
    expect(renewed).toBeGreaterThanOrEqual(5);
    expect(lease.expiresAt.getTime()).toBeGreaterThan(firstExp + 14_000);
    expect(await activeLeaseIds()).toContain(lease.id);
    await lease.release();
    expect(await activeLeaseIds()).not.toContain(lease.id);
  }, 40_000);

  test('fails over when the first URL is down', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const client = new LicenseClient({ urls: [dead, base()], releaseOnExit: false });
    const lease = await client.requestLease({
      product: 'cad',
      tenant: 'acme',
      subject: Subject.user('failover'),
    });
    expect(lease.valid).toBe(true);
    await lease.renew();
    expect(lease.state).toBe('active');
    await lease.release();

    const nobody = new LicenseClient({
      urls: [dead, `http://127.0.0.1:${await freePort()}`],
      releaseOnExit: false,
    });
    const err = await nobody
      .requestLease({ product: 'cad', tenant: 'acme', subject: Subject.user('x') })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'unreachable', retryable: true });
    expect((err as Sdk.LicenseError).details.attempts).toHaveLength(2);
  });

  test('an aborted request is "aborted"', async () => {
    const client = new LicenseClient({ urls: base(), releaseOnExit: false });
    const err = await client
      .requestLease({
        product: 'cad',
        tenant: 'acme',
        subject: Subject.user('x'),
        signal: AbortSignal.abort(),
      })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'aborted' });
  });

  test('a revoked lease is seen as revoked', async () => {
    const client = new LicenseClient({ urls: base(), releaseOnExit: false });
    const lease = await client.requestLease({
      product: 'cad',
      tenant: 'acme',
      subject: Subject.user('revokee'),
    });
    const revoked = new Promise<Sdk.LicenseError>((resolve) => lease.once('revoked', resolve));
    expect((await admin('POST', `/v1/leases/${lease.id}/revoke`)).status).toBe(200);
    await expect(lease.renew()).rejects.toMatchObject({ code: 'lease_released', status: 410 });
    expect((await revoked).code).toBe('lease_released');
    expect(lease.state).toBe('revoked');
    expect(lease.valid).toBe(false);
  });

  test('renews across a server restart', async () => {
    const client = new LicenseClient({ urls: base(), releaseOnExit: false });
    const lease = await client.requestLease({
      product: 'cad',
      tenant: 'acme',
      subject: Subject.user('restart'),
    });
    const errors: string[] = [];
    lease.on('error', (e) => errors.push(e.code));
    expect((await server.stop()).code).toBe(0);
    await sleep(1500);
    server = await serveHere();
    const renewed = new Promise((resolve) => lease.once('renewed', resolve));
    await renewed;
    expect(lease.state).toBe('active');
    expect(lease.valid).toBe(true);
    expect(await activeLeaseIds()).toContain(lease.id);
    await lease.release();
  }, 30_000);

  test('with the server gone the lease stays usable until exp, then is lost', async () => {
    const client = new LicenseClient({ urls: base(), releaseOnExit: false });
    const lease = await client.requestLease({
      product: 'cad',
      tenant: 'acme',
      subject: Subject.user('orphan'),
    });
    const exp = lease.expiresAt.getTime();
    const lost = new Promise<number>((resolve) => lease.once('lost', () => resolve(Date.now())));
    server.child.kill('SIGKILL');
    await server.exited;
    await sleep(Math.max(0, exp - Date.now() - 1500));
    expect(lease.valid).toBe(true);
    const lostAt = await lost;
    expect(lostAt).toBeGreaterThanOrEqual(exp - 50);
    expect(lease.state).toBe('lost');
    expect(lease.valid).toBe(false);
    server = await serveHere();
  }, 30_000);

  test("a client process ended by SIGTERM gives its seat back (the example, on the system's Node)", async () => {
    // Node 20 is the oldest the SDK supports; the machine's own node is 20 on Debian 12.
    const node = existsSync('/usr/bin/node') ? '/usr/bin/node' : process.execPath;
    const child = spawn(node, [EXAMPLE], {
      env: {
        PATH: process.env.PATH ?? '',
        BPLS_URL: `http://127.0.0.1:${await freePort()},${base()}`,
        BPLS_PRODUCT: 'cad',
        BPLS_TENANT: 'acme',
        BPLS_USER: 'exiting',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    for (let i = 0; i < 100 && !/leased /.test(out); i++) await sleep(100);
    const id = /leased (\S+)/.exec(out)?.[1];
    expect(id, `${out}\n${err}`).toMatch(/^lease_/);
    expect(await activeLeaseIds()).toContain(id);
    child.kill('SIGTERM');
    const ended = await exited;
    expect(ended.signal).toBe('SIGTERM');
    expect(await activeLeaseIds()).not.toContain(id);
  }, 30_000);
});

describe('TypeScript SDK: floating extras', () => {
  const client = () => new LicenseClient({ urls: base(), releaseOnExit: false });
  const ask = (tenant: string, who: string, extra: Partial<Sdk.LeaseRequest> = {}) =>
    client().requestLease({ product: 'cad', tenant, subject: Subject.user(who), ...extra });

  test('borrowHours: a borrowed lease lasts the borrow, and release returns it early', async () => {
    await entitlement('borrow', { type: 'concurrent', max_seats: 1, max_borrow_hours: 72 });
    const lease = await ask('borrow', 'laptop', { borrowHours: 72 });
    expect(lease.borrowed).toBe(true);
    expect(lease.overdraft).toBe(false);
    expect(lease.expiresAt.getTime() - Date.now()).toBeGreaterThan(71.9 * 3_600_000);
    await lease.release();
    expect(await activeLeaseIds()).not.toContain(lease.id);
  });

  test('instanceId: two workstations share one seat; the first exits, the second keeps it', async () => {
    await entitlement('shared', { type: 'concurrent', max_seats: 1 });
    const ws1 = await ask('shared', 'alice', { instanceId: 'ws1' });
    const ws2 = await ask('shared', 'alice', { instanceId: 'ws2' });
    expect(ws2.id).toBe(ws1.id);
    await ws1.release();
    expect(await activeLeaseIds()).toContain(ws1.id);
    const intruder = await ask('shared', 'bob').catch((e: unknown) => e);
    expect(intruder).toMatchObject({ code: 'seats_exhausted' });
    await ws2.renew();
    expect(ws2.valid).toBe(true);
    await ws2.release();
    expect(await activeLeaseIds()).not.toContain(ws1.id);
  });

  test('waitSeconds: a request waits for the seat a release frees', async () => {
    await entitlement('queue', { type: 'concurrent', max_seats: 1 });
    const holder = await ask('queue', 'first');
    const waiting = ask('queue', 'second', { waitSeconds: 20 });
    await sleep(300);
    await holder.release();
    const lease = await waiting;
    expect(lease.valid).toBe(true);
    await lease.release();
  });

  test('overdraft: a grant past max_seats says so', async () => {
    await entitlement('over', { type: 'concurrent', max_seats: 1, overdraft_seats: 1 });
    const a = await ask('over', 'a');
    const b = await ask('over', 'b');
    expect([a.overdraft, b.overdraft]).toEqual([false, true]);
    await Promise.all([a.release(), b.release()]);
  });
});
