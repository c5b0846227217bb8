/**
 * The server serves the client lease routes (grant, renew, release) straight on node:http
 * (src/http/dispatch.ts serveNode) and everything else through the Hono router. Two worlds built
 * alike: the app through app.request() (dispatch.ts fetch), and a real listening server; the same
 * requests must get the same answers (status, error code, message and details, headers), and the
 * server's requests must reach its log and /metrics. test/http/pipeline.test.ts compares every
 * route shape on one database.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionEntitlement } from './provision.ts';
import { request as httpRequest } from 'node:http';
import { rmSync } from 'node:fs';
import fc from 'fast-check';
import { createHarness, seedEntitlement, tempDir, SEED_NOW, type Harness } from '../helpers.ts';
import { ManualClock } from '../../src/clock.ts';
import { createIdentity, dataPaths } from '../../src/data-dir.ts';
import { openStore } from '../../src/storage/store.ts';
import { createLogger } from '../../src/log.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { rawExchange } from './raw.ts';

interface Answer {
  status: number;
  body: any;
  headers: Record<string, string | undefined>;
}

let h: Harness;
let server: RunningServer;
let serverDir: string;
let serverAdmin: string;
const logLines: string[] = [];

const HEADERS = ['content-type', 'x-request-id', 'connection'];

/** A request to the real server, with full control of the bytes (chunked bodies, bad lengths). */
function viaServer(
  path: string,
  opts: {
    method?: string;
    body?: string | Buffer;
    headers?: Record<string, string>;
    chunks?: Buffer[];
  } = {},
): Promise<Answer> {
  const url = new URL(path, server.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: opts.method ?? 'POST',
        headers: { 'content-type': 'application/json', ...opts.headers },
        agent: false,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          const headers = Object.fromEntries(
            HEADERS.map((k) => [k, res.headers[k] as string | undefined]),
          );
          resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : undefined, headers });
        });
      },
    );
    // The server may answer 413 and close before the whole body is sent.
    req.on('error', (err) =>
      (err as NodeJS.ErrnoException).code === 'ECONNRESET' ||
      (err as NodeJS.ErrnoException).code === 'EPIPE'
        ? undefined
        : reject(err),
    );
    if (opts.chunks) {
      for (const c of opts.chunks) req.write(c);
      req.end();
    } else req.end(opts.body);
  });
}

async function viaApp(
  path: string,
  opts: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const res = await h.app.request(path, {
    method: opts.method ?? 'POST',
    headers: { 'content-type': 'application/json', ...opts.headers },
    ...(opts.body !== undefined ? { body: opts.body } : {}),
  });
  const text = await res.text();
  const headers = Object.fromEntries(HEADERS.map((k) => [k, res.headers.get(k) ?? undefined]));
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers };
}

/** What must be equal between the two: everything but the ids and tokens each world makes up. */
function comparable(a: Answer): unknown {
  const body = a.body?.error
    ? { error: { ...a.body.error, request_id: typeof a.body.error.request_id } }
    : a.body && { ...a.body, token: typeof a.body.token };
  const text =
    body === undefined
      ? undefined
      : JSON.stringify(body).replace(/\b(lease|ent)_[A-Za-z0-9_-]{10,}/g, '$1_ID');
  return {
    status: a.status,
    body: text && JSON.parse(text),
    contentType: a.headers['content-type'],
    requestId: typeof a.headers['x-request-id'],
  };
}

async function both(
  path: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<[Answer, Answer]> {
  return [await viaApp(path, { body, headers }), await viaServer(path, { body, headers })];
}

const provision = {
  ...seedEntitlement,
  policy_json: { type: 'concurrent', max_seats: 2, features: ['feature-a', 'feature-b'] },
  ends_at: '2030-01-01T00:00:00Z',
};
const grantBody = (subject: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    product_id: 'your-product-id',
    tenant_id: 'customer-tenant-id',
    subject_type: 'user',
    subject_id: subject,
    ...extra,
  });

beforeAll(async () => {
  h = createHarness();
  expect((await h.req('POST', '/v1/entitlements', provision)).status).toBe(201);

  serverDir = tempDir();
  const clock = new ManualClock(SEED_NOW);
  createIdentity(serverDir, clock.now());
  openStore(dataPaths(serverDir).db).close();
  const log = createLogger({
    level: 'info',
    write: (t) => logLines.push(...t.split('\n').filter(Boolean)),
  });
  server = await startServer(
    {
      dataDir: serverDir,
      nativeCacheDir: serverDir,
      host: '127.0.0.1',
      port: 0,
      durability: 'full',
      clock,
    },
    log,
  );
  serverAdmin = server.ctx.services.apiTokens.create(
    { name: 'test admin', role: 'admin' },
    'test',
  ).token;
  await provisionEntitlement((p, i) => fetch(`${server.url}${p}`, i), serverAdmin, provision);
});

afterAll(async () => {
  await server?.close();
  h?.close();
  if (serverDir) rmSync(serverDir, { recursive: true, force: true });
});

describe('the lease routes answer the same through the server as through the app', () => {
  it('grant, the same subject again, renew, release, release again, renew after release', async () => {
    const [a1, s1] = await both('/v1/license/lease', grantBody('u1', { features: ['feature-a'] }));
    expect(s1.status).toBe(201);
    expect(comparable(s1)).toEqual(comparable(a1));
    expect(s1.body).toMatchObject({
      lease_id: expect.stringMatching(/^lease_/),
      token: expect.stringMatching(/^v4\.public\./),
      features: ['feature-a'],
    });

    const [a2, s2] = await both('/v1/license/lease', grantBody('u1', { features: ['feature-a'] }));
    expect(comparable(s2)).toEqual(comparable(a2));
    expect(s2.body.lease_id).toBe(s1.body.lease_id);

    const renew = (a: Answer) => JSON.stringify({ lease_id: a.body.lease_id });
    const ar = await viaApp('/v1/license/lease/renew', { body: renew(a1) });
    const sr = await viaServer('/v1/license/lease/renew', { body: renew(s1) });
    expect(sr.status).toBe(200);
    expect(comparable(sr)).toEqual(comparable(ar));

    for (let i = 0; i < 2; i++) {
      const al = await viaApp('/v1/license/lease/release', { body: renew(a1) });
      const sl = await viaServer('/v1/license/lease/release', { body: renew(s1) });
      expect(sl.status).toBe(200);
      expect({ ...sl.body, lease_id: 'x' }).toEqual({ ...al.body, lease_id: 'x' });
      expect(sl.body).toMatchObject({ lease_id: s1.body.lease_id, state: 'released' });
    }

    const ag = await viaApp('/v1/license/lease/renew', { body: renew(a1) });
    const sg = await viaServer('/v1/license/lease/renew', { body: renew(s1) });
    expect(sg.status).toBe(410);
    expect(sg.body.error.code).toBe('lease_released');
    expect(comparable(sg)).toEqual(comparable(ag));
  });

  it('refuses alike: seats exhausted, unknown product, unknown lease, unentitled feature', async () => {
    await both('/v1/license/lease', grantBody('u2'));
    await both('/v1/license/lease', grantBody('u3'));
    const cases = [
      ['/v1/license/lease', grantBody('u4'), 409, 'seats_exhausted'],
      ['/v1/license/lease', grantBody('u5', { product_id: 'nope' }), 404, 'not_found'],
      [
        '/v1/license/lease/renew',
        JSON.stringify({ lease_id: 'lease_AAAAAAAAAAAAAAAAAAAAAA' }),
        404,
        'not_found',
      ],
      [
        '/v1/license/lease/release',
        JSON.stringify({ lease_id: 'lease_AAAAAAAAAAAAAAAAAAAAAA' }),
        404,
        'not_found',
      ],
      [
        '/v1/license/lease',
        grantBody('u2', { features: ['feature-z'] }),
        403,
        'feature_not_entitled',
      ],
    ] as const;
    for (const [path, body, status, code] of cases) {
      const [a, s] = await both(path, body);
      expect(s.status, `${path} ${body}`).toBe(status);
      expect(s.body.error.code).toBe(code);
      expect(comparable(s)).toEqual(comparable(a));
    }
  });

  it('answers bad bodies alike, with the envelope, changing nothing', async () => {
    const before = await fetch(`${server.url}/v1/leases?limit=100`, {
      headers: { authorization: `Bearer ${serverAdmin}` },
    }).then((r) => r.json());
    const bodies = [
      '',
      '   ',
      '{bad',
      'null',
      '[]',
      '"text"',
      '42',
      '{"product_id": 5}',
      grantBody('u9', { extra: true }),
      grantBody('a\u0000b'),
      '{"lease_id": "x\'; DROP TABLE leases; --"}',
      '{"__proto__": {"x": 1}, "lease_id": 1}',
    ];
    for (const path of [
      '/v1/license/lease',
      '/v1/license/lease/renew',
      '/v1/license/lease/release',
    ]) {
      for (const body of bodies) {
        const [a, s] = await both(path, body);
        expect(s.status, `${path} ${JSON.stringify(body)}`).toBe(400);
        expect(s.body.error.code).toBe('invalid_request');
        expect(comparable(s)).toEqual(comparable(a));
      }
    }
    const after = await fetch(`${server.url}/v1/leases?limit=100`, {
      headers: { authorization: `Bearer ${serverAdmin}` },
    }).then((r) => r.json());
    expect(after).toEqual(before);
  });

  it('answers generated bodies alike (property)', async () => {
    const body = fc.oneof(
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc
        .record(
          {
            product_id: fc.string(),
            tenant_id: fc.string(),
            subject_type: fc.constantFrom('user', 'machine', 'x'),
            subject_id: fc.string(),
            lease_id: fc.string(),
          },
          { requiredKeys: [] },
        )
        .map((v) => JSON.stringify(v)),
      fc.string(),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          '/v1/license/lease',
          '/v1/license/lease/renew',
          '/v1/license/lease/release',
        ),
        body,
        async (path, b) => {
          const [a, s] = await both(path, b);
          expect(s.status).toBeLessThan(500);
          expect(comparable(s)).toEqual(comparable(a));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('caps the body: a declared length over 16 KiB is refused unread and the connection closed; a chunked one is counted', async () => {
    const huge = Buffer.alloc(2 << 20, 'x');
    const declared = await viaServer('/v1/license/lease', { body: huge });
    expect(declared.status).toBe(413);
    expect(declared.body.error).toMatchObject({
      code: 'payload_too_large',
      details: { limit_bytes: 16 << 10 },
    });
    expect(declared.headers.connection).toBe('close');
    expect(comparable(declared)).toEqual(
      comparable(await viaApp('/v1/license/lease', { body: huge.toString() })),
    );

    const chunked = await viaServer('/v1/license/lease/renew', {
      chunks: Array.from({ length: 5 }, () => Buffer.alloc(300_000, ' ')),
    });
    expect(chunked.status).toBe(413);
    expect(chunked.body.error.code).toBe('payload_too_large');

    // A chunked body under the cap is read whole.
    const small = await viaServer('/v1/license/lease', {
      chunks: [Buffer.from(grantBody('u2').slice(0, 10)), Buffer.from(grantBody('u2').slice(10))],
    });
    expect(small.status).toBe(201);
  });

  it('refuses alike on the lease path and the app path: no Host, a declared body over the cap; the client reads each refusal', async () => {
    const strip = (a: { status: number; headers: Record<string, string>; body: any }) => ({
      status: a.status,
      type: a.headers['content-type'],
      connection: a.headers.connection,
      error: { ...a.body.error, request_id: typeof a.body.error.request_id },
    });
    const noHost = (path: string) =>
      rawExchange(server.url, [
        `POST ${path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
      ]);
    const [l, t] = [
      (await noHost('/v1/license/lease')).answers[0]!,
      (await noHost('/v1/tokens')).answers[0]!,
    ];
    expect(strip(l)).toMatchObject({
      status: 400,
      type: 'application/json',
      connection: 'close',
      error: { code: 'invalid_request' },
    });
    expect(strip(l)).toEqual(strip(t));
    // 4 MB declared over each route's cap: both answer 413 and drain what is still sent.
    const big = Buffer.alloc(4 << 20, ' ');
    const over = (path: string) =>
      rawExchange(server.url, [
        `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${big.length}\r\n\r\n`,
        big,
      ]);
    const [lo, to] = await Promise.all([over('/v1/license/lease'), over('/v1/tokens')]);
    expect(lo.ended).toBe('close');
    expect(to.ended).toBe('close');
    expect(strip(lo.answers[0]!)).toMatchObject({
      status: 413,
      connection: 'close',
      error: { code: 'payload_too_large', details: { limit_bytes: 16 << 10 } },
    });
    expect(strip(to.answers[0]!)).toMatchObject({
      status: 413,
      connection: 'close',
      error: { code: 'payload_too_large', details: { limit_bytes: 1 << 20 } },
    });
  });

  it('echoes a sane X-Request-Id and replaces a hostile one; ignores a query string; leaves other methods to the app', async () => {
    const given = await viaServer('/v1/license/lease/renew', {
      body: '{}',
      headers: { 'x-request-id': 'client-abc.123' },
    });
    expect(given.headers['x-request-id']).toBe('client-abc.123');
    expect(given.body.error.request_id).toBe('client-abc.123');
    const hostile = await viaServer('/v1/license/lease/renew', {
      body: '{}',
      headers: { 'x-request-id': 'a b<script>' },
    });
    expect(hostile.headers['x-request-id']).toMatch(/^req_/);

    const [a, s] = await both('/v1/license/lease?debug=1', grantBody('u2'));
    expect(s.status).toBe(201);
    expect(comparable(s)).toEqual(comparable(a));

    const get = await viaServer('/v1/license/lease', { method: 'GET' });
    expect(get.status).toBe(404);
    expect(comparable(get)).toEqual(
      comparable(await viaApp('/v1/license/lease', { method: 'GET' })),
    );
  });

  it('logs one line per lease request and counts it in /metrics', async () => {
    const n = logLines.length;
    const r = await viaServer('/v1/license/lease', {
      body: grantBody('u2'),
      headers: { 'x-request-id': 'log-check-1' },
    });
    expect(r.status).toBe(201);
    const line = logLines
      .slice(n)
      .map((l) => JSON.parse(l))
      .find((l) => l.request_id === 'log-check-1');
    expect(line).toMatchObject({
      level: 'info',
      msg: 'request',
      method: 'POST',
      path: '/v1/license/lease',
      status: 201,
    });
    expect(JSON.stringify(line)).not.toContain(r.body.token);
    const metrics = await fetch(`${server.url}/metrics`).then((x) => x.text());
    const count = Number(
      /bpls_http_requests_total\{method="POST",status="201"\} (\d+)/.exec(metrics)?.[1],
    );
    expect(count).toBeGreaterThanOrEqual(5);
  });
});
