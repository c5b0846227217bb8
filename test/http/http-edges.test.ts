/**
 * The HTTP edges of a listening server (docs/design.md, "Process, files and resources"): per-route body
 * caps, one budget of buffered bytes, slow bodies cut, node:http's own errors in the envelope,
 * HTTP/1.0 without Host, and the drain. (Refusals read by Node's fetch: test/e2e/http-edges.test.ts,
 * against a server in its own process, where the race shows.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionEntitlement } from './provision.ts';
import { rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tempDir, SEED_NOW, seedEntitlement } from '../helpers.ts';
import { ManualClock } from '../../src/clock.ts';
import { createIdentity, dataPaths } from '../../src/data-dir.ts';
import { openStore } from '../../src/storage/store.ts';
import { silentLogger } from '../../src/log.ts';
import { startServer, type RunningServer, type ServeConfig } from '../../src/server.ts';
import { rawExchange } from './raw.ts';

const BUDGET = 3 << 20;
const dirs: string[] = [];
let server: RunningServer;
let admin: string;

async function start(
  extra: Partial<ServeConfig> = {},
  log = silentLogger,
): Promise<{ server: RunningServer; admin: string }> {
  const dir = tempDir();
  dirs.push(dir);
  const clock = new ManualClock(SEED_NOW);
  createIdentity(dir, clock.now());
  openStore(dataPaths(dir).db).close();
  const s = await startServer(
    {
      dataDir: dir,
      nativeCacheDir: dir,
      host: '127.0.0.1',
      port: 0,
      durability: 'normal',
      clock,
      ...extra,
    },
    log,
  );
  const token = s.ctx.services.apiTokens.create(
    { name: 'test admin', role: 'admin' },
    'test',
  ).token;
  return { server: s, admin: token };
}

const provision = {
  ...seedEntitlement,
  policy_json: { type: 'concurrent', max_seats: 1000, features: ['feature-a'] },
  ends_at: '2030-01-01T00:00:00Z',
};
const grantBody = (subject: string) =>
  JSON.stringify({
    product_id: 'your-product-id',
    tenant_id: 'customer-tenant-id',
    subject_type: 'user',
    subject_id: subject,
  });
const countTokens = () =>
  (server.ctx.store as any).db.prepare('SELECT count(*) AS n FROM api_tokens').get().n as number;

function expectEnvelope(
  a: { status: number; headers: Record<string, string>; body: any },
  status: number,
  code: string,
): void {
  expect(a.status).toBe(status);
  expect(a.headers['content-type']).toMatch(/^application\/json/);
  expect(a.body?.error).toMatchObject({
    code,
    message: expect.any(String),
    request_id: expect.stringMatching(/^req_/),
  });
  expect(a.headers['x-request-id']).toBe(a.body.error.request_id);
}

beforeAll(async () => {
  ({ server, admin } = await start({
    bodyBudgetBytes: BUDGET,
    timeouts: { headersMs: 1_500, leaseBodyMs: 800, bodyMs: 1_500 },
  }));
  await provisionEntitlement((p, i) => fetch(`${server.url}${p}`, i), admin, provision);
});

afterAll(async () => {
  await server?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('bodies and clients that stretch the protocol', () => {
  it('refuses a body that is not UTF-8 (never turned into U+FFFD), on the lease path and an admin route, and creates nothing', async () => {
    const body = (subject: Buffer) =>
      Buffer.concat([
        Buffer.from(
          '{"product_id":"your-product-id","tenant_id":"customer-tenant-id","subject_type":"user","subject_id":"',
        ),
        subject,
        Buffer.from('"}'),
      ]);
    const before = (server.ctx.store as any).db.prepare('SELECT count(*) AS n FROM leases').get()
      .n as number;
    for (const bad of [
      Buffer.from([0xff]),
      Buffer.from([0xc0, 0x80]),
      Buffer.from([0xed, 0xa0, 0x80]),
    ]) {
      const b = body(bad);
      const r = await rawExchange(server.url, [
        Buffer.concat([
          Buffer.from(
            `POST /v1/license/lease HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\n\r\n`,
          ),
          b,
        ]),
      ]);
      expectEnvelope(r.answers[0]!, 400, 'invalid_request');
      expect(r.answers[0]!.body.error.message).toMatch(/UTF-8/);
    }
    expect((server.ctx.store as any).db.prepare('SELECT count(*) AS n FROM leases').get().n).toBe(
      before,
    );
    const ent = Buffer.concat([
      Buffer.from('{"tenant_id":"t'),
      Buffer.from([0xff]),
      Buffer.from(
        '","product_id":"p","policy_json":{"type":"concurrent","max_seats":1},"starts_at":"2024-01-01T00:00:00Z","ends_at":"2030-01-01T00:00:00Z"}',
      ),
    ]);
    const r = await rawExchange(server.url, [
      Buffer.concat([
        Buffer.from(
          `POST /v1/entitlements HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${admin}\r\nContent-Type: application/json\r\nContent-Length: ${ent.length}\r\n\r\n`,
        ),
        ent,
      ]),
    ]);
    expectEnvelope(r.answers[0]!, 400, 'invalid_request');
  });

  it('answers a client that half-closes after its request (the lease it was granted is the one it reads)', async () => {
    const b = grantBody('half-closer');
    const r = await rawExchange(
      server.url,
      [
        `POST /v1/license/lease HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\n\r\n${b}`,
      ],
      { halfClose: true },
    );
    expect(r.answers[0]?.status, r.raw).toBe(201);
    const id = r.answers[0]!.body.lease_id as string;
    expect(
      (server.ctx.store as any).db.prepare('SELECT state FROM leases WHERE id = ?').get(id).state,
    ).toBe('active');
  });
});

describe('connections are bounded', () => {
  it('closes a connection past maxConnections at once, and takes new ones again when others close', async () => {
    const { server: s } = await start({ maxConnections: 5 });
    try {
      const port = s.port;
      const open = (): Promise<Socket> =>
        new Promise((resolve, reject) => {
          const sock = connect(port, '127.0.0.1', () => resolve(sock));
          sock.on('error', reject);
        });
      const held = await Promise.all(Array.from({ length: 5 }, open));
      // The sixth is accepted by the kernel and closed by the server before any byte is read.
      const sixth = await open();
      const closed = await new Promise<boolean>((resolve) => {
        sixth.on('close', () => resolve(true));
        sixth.on('error', () => {});
        sixth.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
        setTimeout(() => resolve(false), 3000);
      });
      expect(closed).toBe(true);
      for (const h of held) h.destroy();
      await new Promise((r) => setTimeout(r, 100));
      const res = await fetch(`${s.url}/healthz`);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    } finally {
      await s.close();
    }
  });
});

describe('body caps per route', () => {
  it('lease routes take 16 KiB, admin routes 1 MiB, the bulk import 64 MiB', async () => {
    const over = (n: number) => `{"x":"${'a'.repeat(n)}"}`;
    for (const path of [
      '/v1/license/lease',
      '/v1/license/lease/renew',
      '/v1/license/lease/release',
    ]) {
      const r = await fetch(`${server.url}${path}`, { method: 'POST', body: over(16 << 10) });
      expect(r.status, path).toBe(413);
      expect(((await r.json()) as any).error).toMatchObject({
        code: 'payload_too_large',
        details: { limit_bytes: 16 << 10 },
      });
      // Just under the cap: read, and refused for what it says, not for its size.
      const ok = await fetch(`${server.url}${path}`, {
        method: 'POST',
        body: over((16 << 10) - 20),
      });
      expect(ok.status, path).toBe(400);
    }
    const before = countTokens();
    const auth = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
    const big = await fetch(`${server.url}/v1/tokens`, {
      method: 'POST',
      headers: auth,
      body: over(1 << 20),
    });
    expect(big.status).toBe(413);
    expect(((await big.json()) as any).error.details).toEqual({ limit_bytes: 1 << 20 });
    const under = await fetch(`${server.url}/v1/tokens`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ name: 'n'.repeat(10), role: 'reader', pad: 'x'.repeat(900_000) }),
    });
    expect(under.status).toBe(400);
    expect(((await under.json()) as any).error.code).toBe('invalid_request');
    const made = await fetch(`${server.url}/v1/tokens`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ name: 'cap-check', role: 'reader' }),
    });
    expect(made.status).toBe(201);
    expect(countTokens()).toBe(before + 1);
    const imp = await fetch(`${server.url}/v1/entitlements/import`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ entitlements: [], pad: 'x'.repeat(2 << 20) }),
    });
    expect(imp.status).toBe(400);
  });

  it('takes one bulk import at a time: a second one meanwhile gets 503 busy with Retry-After', async () => {
    const body = JSON.stringify({
      entitlements: [{ ...provision, external_id: 'imp-1', tenant_id: 'imp-tenant' }],
    });
    // The first import's body is still arriving when the second comes.
    const first = rawExchange(
      server.url,
      [
        `POST /v1/entitlements/import HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${admin}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
        body.slice(10),
      ],
      { gapMs: 400 },
    );
    // A round trip after the first request's bytes were sent: the server has parsed its headers.
    await new Promise((r) => setTimeout(r, 50));
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    const second = await fetch(`${server.url}/v1/entitlements/import`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body,
    });
    expect(second.status).toBe(503);
    expect(second.headers.get('retry-after')).toBe('5');
    expect(((await second.json()) as any).error).toMatchObject({
      code: 'busy',
      details: { reason: 'import_in_progress', retry_after_seconds: 5 },
    });
    const a = (await first).answers[0]!;
    expect(a.status).toBe(200);
    expect(a.body).not.toHaveProperty('error');
    expect(
      (server.ctx.store as any).db
        .prepare("SELECT count(*) AS n FROM entitlements WHERE external_id = 'imp-1'")
        .get().n,
    ).toBe(1);
    // Once it is done, the next one is taken.
    const third = await fetch(`${server.url}/v1/entitlements/import`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body,
    });
    expect(third.status).toBe(200);
  });
});

describe('the budget of buffered bytes', () => {
  it('refuses new bodies with 503 busy past it, on the lease and the app paths, and frees it when the clients go', async () => {
    // A server of its own: these bodies must not time out meanwhile.
    const { server, admin } = await start({ bodyBudgetBytes: BUDGET });
    // Bodies that never finish, each under its route's cap and declaring what fits, filling the
    // budget to within 8 KB.
    const each = (BUDGET - 8_000) / 4;
    const head = (n: number) =>
      `POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${n}\r\n\r\n`;
    const sockets = Array.from({ length: 4 }, () => {
      const s = connect(server.port, '127.0.0.1');
      s.on('error', () => {});
      s.write(head(each + 100) + 'x'.repeat(each));
      return s;
    });
    const deadline = Date.now() + 5_000;
    while (server.bodyBytesHeld() < 4 * each && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    expect(server.bodyBytesHeld()).toBe(4 * each);
    expect(server.bodyBytesHeld()).toBeLessThanOrEqual(BUDGET);

    // A declared body that cannot fit, and a chunked one that crosses the budget, on both paths.
    const declared = await fetch(`${server.url}/v1/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'x', role: 'reader', pad: 'y'.repeat(500_000) }),
    });
    expect(declared.status).toBe(503);
    expect(declared.headers.get('retry-after')).toBe('1');
    const declaredError = ((await declared.json()) as any).error;
    expect(declaredError).toMatchObject({
      code: 'busy',
      details: { reason: 'memory_budget', retry_after_seconds: 1 },
    });
    const lease = await rawExchange(
      server.url,
      [
        `POST /v1/license/lease HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`,
        `3000\r\n${' '.repeat(0x3000)}\r\n`,
      ],
      { gapMs: 50 },
    );
    const l = lease.answers[0]!;
    expectEnvelope(l, 503, 'busy');
    expect(l.headers['retry-after']).toBe('1');
    expect(l.headers.connection).toBe('close');
    // The lease fast path and the app path refuse alike.
    expect({ ...l.body.error, request_id: 0 }).toEqual({ ...declaredError, request_id: 0 });

    // The clients go: their bytes are released, and bodies are taken again.
    for (const s of sockets) s.destroy();
    const until = Date.now() + 5_000;
    while (server.bodyBytesHeld() > 0 && Date.now() < until)
      await new Promise((r) => setTimeout(r, 20));
    expect(server.bodyBytesHeld()).toBe(0);
    const again = await fetch(`${server.url}/v1/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'after', role: 'reader', pad: 'y'.repeat(500_000) }),
    });
    expect(again.status).toBe(400);
    expect(((await again.json()) as any).error.code).toBe('invalid_request');
    await server.close();
  });
});

describe('slow bodies and headers', () => {
  it('cuts a lease body that does not arrive in time: 408 request_timeout with the envelope, nothing granted', async () => {
    const leases = () =>
      (server.ctx.store as any).db
        .prepare("SELECT count(*) AS n FROM leases WHERE subject_id = 'slow'")
        .get().n;
    const r = await rawExchange(
      server.url,
      [`POST /v1/license/lease HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n{"product_id":`],
      { waitMs: 5_000 },
    );
    expect(r.ended).toBe('close');
    expectEnvelope(r.answers[0]!, 408, 'request_timeout');
    expect(r.answers[0]!.headers.connection).toBe('close');
    expect(leases()).toBe(0);
    expect(server.bodyBytesHeld()).toBe(0);
  });

  it('cuts an admin body that trickles in, and headers that never end, with the envelope', async () => {
    const body = await rawExchange(
      server.url,
      [
        `POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${admin}\r\nContent-Length: 100\r\n\r\n{`,
        ' ',
        ' ',
        ' ',
        ' ',
        ' ',
        ' ',
        ' ',
        ' ',
        ' ',
      ],
      { gapMs: 300, waitMs: 6_000 },
    );
    expectEnvelope(body.answers[0]!, 408, 'request_timeout');
    const headers = await rawExchange(
      server.url,
      ['GET /healthz HTTP/1.1\r\nHost: x\r\n', 'X-A: 1\r\n'],
      { gapMs: 200, waitMs: 6_000 },
    );
    expectEnvelope(headers.answers[0]!, 408, 'request_timeout');
  });
});

describe("node:http's own refusals carry the envelope", () => {
  const cases = [
    [
      'Content-Length with Transfer-Encoding',
      'POST /v1/license/lease HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      400,
      'invalid_request',
    ],
    [
      'two Content-Length',
      'POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
      400,
      'invalid_request',
    ],
    [
      'a bad Content-Length',
      'POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n{}',
      400,
      'invalid_request',
    ],
    ['a request line that is not HTTP', 'HELLO\r\n\r\n', 400, 'invalid_request'],
    [
      'a bad header byte',
      'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n',
      400,
      'invalid_request',
    ],
    [
      'headers over 16 KiB',
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      431,
      'headers_too_large',
    ],
    [
      'HTTP/1.1 without Host (lease route)',
      'POST /v1/license/lease HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}',
      400,
      'invalid_request',
    ],
    ['HTTP/1.1 without Host (app route)', 'GET /healthz HTTP/1.1\r\n\r\n', 400, 'invalid_request'],
    [
      'CONNECT (this is no proxy)',
      'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
      400,
      'invalid_request',
    ],
    [
      'Expect: 100-continue with a body over the cap (refused without a 100 Continue)',
      'POST /v1/tokens HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n',
      413,
      'payload_too_large',
    ],
    [
      'a request target that is no path',
      'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      400,
      'invalid_request',
    ],
    [
      'a Host that is no host',
      'GET /healthz HTTP/1.1\r\nHost: a b/c\r\nConnection: close\r\n\r\n',
      400,
      'invalid_request',
    ],
  ] as const;
  it.each(cases)('%s', async (_name, bytes, status, code) => {
    const r = await rawExchange(server.url, [bytes]);
    expect(r.answers, r.raw).toHaveLength(1);
    expectEnvelope(r.answers[0]!, status, code);
    expect(r.ended).toBe('close');
  });

  it('serves a request with an Expect it does not know (node:http answers an empty 417)', async () => {
    const r = await rawExchange(server.url, [
      'GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: magic\r\nConnection: close\r\n\r\n',
    ]);
    expect(r.answers).toMatchObject([{ status: 200, body: { status: 'ok' } }]);
    const body = grantBody('expect-100');
    const c = await rawExchange(
      server.url,
      [
        `POST /v1/license/lease HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n`,
        body,
      ],
      { gapMs: 100 },
    );
    expect(c.answers.map((a) => a.status)).toEqual([100, 201]);
  });

  it('serves HTTP/1.0 without Host on every route', async () => {
    const health = await rawExchange(server.url, ['GET /healthz HTTP/1.0\r\n\r\n']);
    expect(health.answers[0]).toMatchObject({ status: 200, body: { status: 'ok' } });
    const body = JSON.stringify({ name: 'http10', role: 'reader' });
    const before = countTokens();
    const made = await rawExchange(server.url, [
      `POST /v1/tokens HTTP/1.0\r\nAuthorization: Bearer ${admin}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    ]);
    expect(made.answers[0]!.status).toBe(201);
    expect(countTokens()).toBe(before + 1);
    const lease = await rawExchange(server.url, [
      `POST /v1/license/lease HTTP/1.0\r\nContent-Length: ${grantBody('h10').length}\r\n\r\n${grantBody('h10')}`,
    ]);
    expect(lease.answers[0]!.status).toBe(201);
    const missing = await rawExchange(server.url, ['GET /v1/nope HTTP/1.0\r\n\r\n']);
    expectEnvelope(missing.answers[0]!, 404, 'not_found');
  });
});

describe('draining', () => {
  it('answers requests already received, pipelined ones included, with Connection: close, and closes idle connections', async () => {
    const s = await start();
    await fetch(`${s.server.url}/v1/entitlements`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.admin}`, 'content-type': 'application/json' },
      body: JSON.stringify(provision),
    });
    const grant = (subject: string) =>
      `POST /v1/license/lease HTTP/1.1\r\nHost: x\r\nContent-Length: ${grantBody(subject).length}\r\n\r\n${grantBody(subject)}`;
    // An idle keep-alive connection, and one that has sent nothing yet.
    const idle = rawExchange(s.server.url, [grant('idle')], { waitMs: 8_000 });
    await new Promise((r) => setTimeout(r, 100));
    const silent = rawExchange(s.server.url, [], { waitMs: 8_000 });
    await new Promise((r) => setTimeout(r, 50));
    const pipelined = rawExchange(s.server.url, [grant('p1') + grant('p2') + grant('p3')], {
      waitMs: 8_000,
    });
    const singles = Array.from({ length: 16 }, (_, i) =>
      rawExchange(s.server.url, [grant(`d${i}`)], { waitMs: 8_000 }),
    );
    await new Promise((r) => setImmediate(r));
    const closed = s.server.close();

    const p = await pipelined;
    expect(p.answers.map((a) => a.status)).toEqual([201, 201, 201]);
    expect(p.answers.map((a) => a.headers.connection)).toEqual([
      'keep-alive',
      'keep-alive',
      'close',
    ]);
    expect(p.ended).toBe('close');
    for (const one of await Promise.all(singles)) {
      expect(one.answers.map((a) => a.status)).toEqual([201]);
      expect(one.answers[0]!.headers.connection).toBe('close');
      expect(one.ended).toBe('close');
    }
    const i = await idle;
    expect(i.answers.map((a) => a.status)).toEqual([201]);
    expect(i.ended).toBe('close');
    expect((await silent).ended).toBe('close');
    await closed;
  });
});
