/**
 * One request pipeline (src/http/pipeline.ts, src/http/dispatch.ts): every answer, whichever way it
 * is made, gets the same headers, error envelope, log line and metrics count.
 *
 * 1. Parity: one database, two faces. A real listening server (startServer: lease routes served
 *    straight on node:http, the rest through the Hono adapter) and app.request() on an app over the
 *    same store. On every route shape both must give the same status, the same body and every
 *    header alike but the transport ones (Date, Connection, Keep-Alive, Content-Length,
 *    Transfer-Encoding), and the same log line.
 * 2. The header policy: an app whose policy (answerHeaders) carries a probe header, listening on
 *    node:http and called through app.request(): the probe is on every answer, the lease routes,
 *    refusals before the body and node:http's own protocol errors included.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionEntitlement } from './provision.ts';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rmSync } from 'node:fs';
import { createHarness, seedEntitlement, tempDir, SEED_NOW, type Harness } from '../helpers.ts';
import { ManualClock } from '../../src/clock.ts';
import { createIdentity, dataPaths } from '../../src/data-dir.ts';
import { openStore } from '../../src/storage/store.ts';
import { createLogger, silentLogger } from '../../src/log.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { createApp, type App } from '../../src/app.ts';
import { answerHeaders } from '../../src/http/pipeline.ts';
import { createProtocolErrorHandler } from '../../src/http/protocol-errors.ts';
import { rawExchange } from './raw.ts';

/** Hop-by-hop and framing headers: node:http writes them, a Response made in process has none. */
const TRANSPORT = ['date', 'connection', 'keep-alive', 'content-length', 'transfer-encoding'];

interface Seen {
  status: number;
  headers: Record<string, string>;
  text: string;
}

interface Shape {
  name: string;
  method: string;
  path: string;
  body?: string;
  /** Sends the admin token (the server's and the app's are the same store's). */
  token?: boolean;
}

/** A request to a listening server with node:http (no client headers of its own but Host). */
function viaNode(base: string, s: Shape, headers: Record<string, string>): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      new URL(s.path, base),
      { method: s.method, headers, agent: false },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            headers: res.headers as Record<string, string>,
            text: Buffer.concat(parts).toString('utf8'),
          }),
        );
      },
    );
    // A refusal before the body may close while the body is still being sent.
    req.on('error', (err: NodeJS.ErrnoException) =>
      err.code === 'ECONNRESET' || err.code === 'EPIPE' ? undefined : reject(err),
    );
    req.end(s.body);
  });
}

async function viaApp(app: App, s: Shape, headers: Record<string, string>): Promise<Seen> {
  const res = await app.request(s.path, {
    method: s.method,
    headers,
    ...(s.body !== undefined ? { body: s.body } : {}),
  });
  return {
    status: res.status,
    headers: Object.fromEntries(res.headers),
    text: await res.text(),
  };
}

function headersFor(s: Shape, id: string, token: string): Record<string, string> {
  return {
    'x-request-id': id,
    ...(s.body !== undefined ? { 'content-type': 'application/json' } : {}),
    ...(s.token ? { authorization: `Bearer ${token}` } : {}),
  };
}

/** What must be equal: all but transport headers, and what each answer makes up anew. */
function comparable(a: Seen): Seen {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(a.headers))
    if (!TRANSPORT.includes(k)) headers[k] = v.replace(/'nonce-[^']+'/, "'nonce-N'");
  const text = a.text
    // The admin page's style nonce is new on every answer.
    .replace(/nonce="[^"]+"/, 'nonce="N"')
    // Each side creates its own entitlement on the create route.
    .replace(/\bent_[A-Za-z0-9_-]{10,}/g, 'ent_ID')
    // Request counters are each face's own (the gauges come from the one database), and only the
    // server has a checkpoint thread to report on.
    .replace(/^(# (HELP|TYPE) )?bpls_(http_request|wal_).*\n/gm, '');
  return { status: a.status, headers, text };
}

const grantBody = (subject: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    product_id: 'your-product-id',
    tenant_id: 'customer-tenant-id',
    subject_type: 'user',
    subject_id: subject,
    ...extra,
  });
const provision = {
  ...seedEntitlement,
  policy_json: { type: 'concurrent', max_seats: 50, features: ['feature-a'] },
  ends_at: '2030-01-01T00:00:00Z',
};

/** Every route shape: the lease routes, admin routes, refusals, errors, public pages, HEAD. */
function shapes(leaseId: string): Shape[] {
  const lease = (body: string) => ({ method: 'POST', path: '/v1/license/lease', body });
  return [
    { name: 'lease grant', ...lease(grantBody('p1')) },
    {
      name: 'lease renew',
      method: 'POST',
      path: '/v1/license/lease/renew',
      body: JSON.stringify({ lease_id: leaseId }),
    },
    {
      name: 'lease release',
      method: 'POST',
      path: '/v1/license/lease/release',
      body: JSON.stringify({ lease_id: leaseId }),
    },
    { name: 'lease 4xx envelope', ...lease(grantBody('p2', { product_id: 'nope' })) },
    { name: 'lease unentitled feature', ...lease(grantBody('p2', { features: ['zz'] })) },
    { name: 'lease bad JSON', ...lease('{bad') },
    { name: 'lease body not UTF-8', ...lease('{"a":"\udc00"}') },
    { name: 'lease 413 over the cap', ...lease(`{"pad":"${'x'.repeat(20_000)}"}`) },
    { name: 'lease query string', ...lease(grantBody('p1')), path: '/v1/license/lease?x=1' },
    { name: 'lease path escaped', ...lease(grantBody('p1')), path: '/v1/license/lea%73e' },
    { name: 'lease path bad escape', ...lease(grantBody('p1')), path: '/v1/license/lease%' },
    { name: 'lease route, GET', method: 'GET', path: '/v1/license/lease' },
    { name: 'admin GET', method: 'GET', path: '/v1/entitlements?limit=5', token: true },
    {
      name: 'admin POST ok',
      method: 'POST',
      path: '/v1/entitlements',
      body: JSON.stringify(provision),
      token: true,
    },
    {
      name: 'admin POST error',
      method: 'POST',
      path: '/v1/entitlements',
      body: JSON.stringify({ ...provision, starts_at: 'soon' }),
      token: true,
    },
    { name: 'admin bad JSON', method: 'POST', path: '/v1/tokens', body: '[', token: true },
    {
      name: 'admin 413 over the cap',
      method: 'POST',
      path: '/v1/tokens',
      body: `{"pad":"${'x'.repeat(1_100_000)}"}`,
      token: true,
    },
    { name: 'admin bad query', method: 'GET', path: '/v1/leases?limit=-1', token: true },
    { name: '401', method: 'GET', path: '/v1/entitlements' },
    { name: '404', method: 'GET', path: '/v1/nothing-here' },
    { name: '404 POST with a body', method: 'POST', path: '/nope', body: '{}' },
    { name: 'healthz', method: 'GET', path: '/healthz' },
    { name: 'readyz', method: 'GET', path: '/readyz' },
    { name: 'keys', method: 'GET', path: '/v1/license/keys' },
    { name: 'metrics', method: 'GET', path: '/metrics' },
    { name: 'admin page', method: 'GET', path: '/admin' },
    { name: 'HEAD ok', method: 'HEAD', path: '/healthz' },
    { name: 'HEAD 404', method: 'HEAD', path: '/v1/nothing-here' },
    { name: 'HEAD 401', method: 'HEAD', path: '/v1/entitlements' },
  ];
}

describe('one pipeline: the server and app.request() answer alike on every route shape', () => {
  let dir: string;
  let server: RunningServer;
  let app: App;
  let token: string;
  const serverLog: any[] = [];
  const appLog: any[] = [];
  const capture = (into: any[]) =>
    createLogger({
      level: 'info',
      write: (t) =>
        into.push(
          ...t
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l)),
        ),
    });

  beforeAll(async () => {
    dir = tempDir();
    const clock = new ManualClock(SEED_NOW);
    createIdentity(dir, clock.now());
    openStore(dataPaths(dir).db).close();
    server = await startServer(
      {
        dataDir: dir,
        nativeCacheDir: dir,
        host: '127.0.0.1',
        port: 0,
        durability: 'full',
        clock,
      },
      capture(serverLog),
    );
    const ctx = server.ctx;
    // The same services and store: both faces see one database.
    app = createApp({
      services: ctx.services,
      store: ctx.store,
      clock: ctx.clock,
      info: ctx.info,
      log: capture(appLog),
    });
    token = ctx.services.apiTokens.create({ name: 'parity', role: 'admin' }, 'test').token;
    await provisionEntitlement((p, i) => app.request(p, i), token, provision);
  });

  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('same status, body, headers (all but transport ones) and log line', async () => {
    const granted = await app.request('/v1/license/lease', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: grantBody('p0'),
    });
    const leaseId = ((await granted.json()) as { lease_id: string }).lease_id;
    const statuses = new Set<number>();
    const ids = new Map<string, string>();
    let n = 0;
    for (const s of shapes(leaseId)) {
      const id = `parity-${++n}`;
      ids.set(s.name, id);
      const a = await viaApp(app, s, headersFor(s, id, token));
      const v = await viaNode(server.url, s, headersFor(s, id, token));
      expect(comparable(v), s.name).toEqual(comparable(a));
      // The policy's headers, with the caller's request id echoed.
      expect(v.headers, s.name).toMatchObject(answerHeaders(id));
      statuses.add(v.status);
      // One log line each, alike but for the time taken.
      const line = (log: any[]) => {
        const found = log.filter((l) => l.msg === 'request' && l.request_id === id);
        expect(found, `${s.name}: one log line`).toHaveLength(1);
        const { ts: _ts, ms, ...rest } = found[0];
        expect(typeof ms).toBe('number');
        return rest;
      };
      expect(line(serverLog), s.name).toEqual(line(appLog));
    }
    // The shapes do cover what they say: successes, refusals, errors and both 413s.
    expect([...statuses].sort()).toEqual([200, 201, 400, 401, 403, 404, 413]);
    // The log line names the token that authenticated (never the token itself).
    // A lease path with escapes is the lease route, as the router matches its own routes.
    const statusOf = (name: string) =>
      serverLog.find((l) => l.request_id === ids.get(name))?.status;
    expect(statusOf('lease path escaped')).toBe(201);
    expect(statusOf('lease path bad escape')).toBe(404);
    const admin = serverLog.find((l) => l.request_id === ids.get('admin GET'));
    expect(admin).toMatchObject({ path: '/v1/entitlements', status: 200 });
    expect(admin.token_id).toMatch(/^tok_/);
    expect(JSON.stringify(serverLog)).not.toContain(token);
  });
});

describe('the header policy is the one place to add a header to every answer', () => {
  let h: Harness;
  let app: App;
  let node: Server;
  let base: string;

  beforeAll(async () => {
    h = createHarness();
    expect((await h.req('POST', '/v1/entitlements', provision)).status).toBe(201);
    // The policy as a deployment would change it: the default headers plus one.
    app = createApp({
      services: h.services,
      store: h.store,
      clock: h.clock,
      info: h.info,
      log: silentLogger,
      headers: (id) => ({ ...answerHeaders(id), 'x-policy-probe': 'on' }),
    });
    // As the server's: an HTTP/1.1 request without Host is ours to refuse, with the envelope.
    node = createServer({ requireHostHeader: false }, (req, res) => app.serveNode(req, res));
    node.on('clientError', createProtocolErrorHandler(app.pipeline));
    await new Promise<void>((r) => node.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(node.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((r) => node?.close(r));
    h?.close();
  });

  it('appears on every route shape, through node:http and app.request()', async () => {
    const granted = await app.request('/v1/license/lease', {
      method: 'POST',
      body: grantBody('q0'),
    });
    expect(granted.headers.get('x-policy-probe')).toBe('on');
    const leaseId = ((await granted.json()) as { lease_id: string }).lease_id;
    for (const s of shapes(leaseId)) {
      const headers = headersFor(s, 'probe-1', h.admin);
      const v = await viaNode(base, s, headers);
      const a = await viaApp(app, s, headers);
      expect(v.headers['x-policy-probe'], `${s.name} (node:http, ${v.status})`).toBe('on');
      expect(a.headers['x-policy-probe'], `${s.name} (app.request, ${a.status})`).toBe('on');
      expect(v.headers['x-request-id']).toBe('probe-1');
    }
  });

  it('appears on refusals before the body and on protocol errors', async () => {
    // The answers come at once; a refused connection then lingers, a served one stays open.
    const quick = { waitMs: 1000 };
    const answers = await Promise.all([
      // An HTTP/1.1 request without Host, on a lease route and an admin route.
      rawExchange(
        base,
        [
          'POST /v1/license/lease HTTP/1.1\r\nContent-Type: application/json\r\n' +
            'Content-Length: 2\r\n\r\n{}',
        ],
        quick,
      ),
      rawExchange(base, ['GET /v1/entitlements HTTP/1.1\r\n\r\n'], quick),
      // A declared body over the cap, refused unread.
      rawExchange(
        base,
        ['POST /v1/license/lease HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n'],
        quick,
      ),
      // A chunked body that passes the cap as it arrives.
      rawExchange(
        base,
        [
          'POST /v1/license/lease/renew HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' +
            `5000\r\n${' '.repeat(0x5000)}\r\n0\r\n\r\n`,
        ],
        quick,
      ),
      // Not HTTP at all: node:http's parser refuses it, the envelope is written on the socket.
      rawExchange(base, ['HELLO THERE\r\n\r\n'], quick),
      // A Host that is no host: the adapter cannot make a Request of it.
      rawExchange(base, ['GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n'], quick),
    ]);
    const seen = answers.map((x) => x.answers[0]!);
    expect(seen.map((a) => [a.status, a.body?.error?.code])).toEqual([
      [400, 'invalid_request'],
      [400, 'invalid_request'],
      [413, 'payload_too_large'],
      [413, 'payload_too_large'],
      [400, 'invalid_request'],
      [400, 'invalid_request'],
    ]);
    for (const a of seen) {
      expect(a.headers['x-policy-probe']).toBe('on');
      expect(a.headers['x-request-id']).toBe(a.body.error.request_id);
      expect(a.headers['content-type']).toBe('application/json');
    }
  });
});
