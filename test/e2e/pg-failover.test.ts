// Failover on PostgreSQL (issue 17), with the real single executable and a real PostgreSQL: two
// server processes on one database keep seats exact between them; one of them SIGKILLed under load
// loses no acknowledged lease and the other keeps answering; PostgreSQL restarted or crashed under
// load turns into 503s with Retry-After (never a 500, never a hang, never a dead server), and both
// servers serve again once it is back, without a restart of their own.
//
// Parts 1 and 2 use databases on the run's shared cluster; part 3 restarts PostgreSQL, so it starts
// a cluster of its own.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, startCluster, type PgCluster } from '../../scripts/pg-cluster.mjs';
import { freshPgUrl } from '../pg.ts';
import { ROOT, runProcess, startServe, type ServeHandle } from '../spawn.ts';
import { rfc3339, stopAll, YEAR_MS } from './world.ts';

const EXE: [string, string[]] = [path.join(ROOT, 'dist', 'bp-license-server'), []];
/** Every request of these tests gives up after this long: a hang is a failure, not a stuck run. */
const REQUEST_TIMEOUT_MS = 8000;

let root: string;
const servers: ServeHandle[] = [];
const clusters: PgCluster[] = [];

beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), 'bpls-pg-failover-'));
});

afterAll(async () => {
  await stopAll(servers);
  for (const c of clusters) await c.stop();
  rmSync(root, { recursive: true, force: true });
});

/** The executable run to its end against `url` with `dataDir`; its --json answer. Exit 0 or fail. */
async function bpls(url: string, dataDir: string, args: string[]): Promise<any> {
  const r = await runProcess(EXE, ['--database', url, '--data-dir', dataDir, ...args, '--json'], {
    cwd: root,
    timeoutMs: 60_000,
  });
  expect(r.code, `${args.join(' ')}: ${r.stderr}${r.stdout}`).toBe(0);
  return JSON.parse(r.stdout);
}

/** A concurrent entitlement of `seats` seats for tenant `t` and `product`; its id. */
async function concurrent(url: string, dataDir: string, product: string, seats: number) {
  const e = await bpls(url, dataDir, [
    // prettier-ignore
    'entitlements',
    'create',
    '--tenant',
    't',
    '--product',
    product,
    '--type',
    'concurrent',
    '--max-seats',
    String(seats),
    '--starts',
    rfc3339(Date.now() - YEAR_MS),
    '--ends',
    rfc3339(Date.now() + YEAR_MS),
  ]);
  expect(e.entitlement_id).toMatch(/^ent_/);
  return e.entitlement_id as string;
}

/**
 * `init` once on the database `url` (identity files in `<label>/a`), `seats` (product → seats)
 * made by the executable, then two `serve` processes: one on that data dir, one on a copy of it.
 */
async function twoServers(url: string, label: string, seats: Record<string, number>) {
  const a = path.join(root, label, 'a');
  const b = path.join(root, label, 'b');
  mkdirSync(path.dirname(a), { recursive: true });
  const init = await bpls(url, a, ['init']);
  expect(init).toMatchObject({ created: true, server_id: expect.stringMatching(/^srv_/) });
  mkdirSync(b);
  for (const f of ['server.key', 'server.json']) copyFileSync(path.join(a, f), path.join(b, f));
  const ents: Record<string, string> = {};
  for (const [product, n] of Object.entries(seats))
    ents[product] = await concurrent(url, a, product, n);
  const pair = await Promise.all(
    [a, b].map((dir) =>
      startServe(
        EXE,
        ['--database', url, '--data-dir', dir, '--host', '127.0.0.1', '--port', '0'],
        {
          cwd: root,
          timeoutMs: 60_000,
        },
      ),
    ),
  );
  servers.push(...pair);
  return { servers: pair, ents, token: init.admin_token as string };
}

interface Answer {
  status: number;
  body: any;
  retryAfter: string | null;
  /** The fetch failed (connection refused or reset, or REQUEST_TIMEOUT_MS passed): status 0. */
  error?: string;
}

/**
 * One request (POST with a JSON body, else GET; `token`: an admin bearer token), bounded by
 * REQUEST_TIMEOUT_MS; a failed fetch is status 0 with its error.
 */
async function call(base: string, route: string, body?: unknown, token?: string): Promise<Answer> {
  try {
    const res = await fetch(`${base}${route}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: {
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        ...(token === undefined ? {} : { Authorization: `Bearer ${token}` }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: kept as text for the failure message
    }
    return { status: res.status, body: parsed, retryAfter: res.headers.get('retry-after') };
  } catch (err) {
    return { status: 0, body: null, retryAfter: null, error: String(err) };
  }
}

const grant = (base: string, product: string, subject: string) =>
  call(base, '/v1/license/lease', {
    product_id: product,
    tenant_id: 't',
    subject_type: 'user',
    subject_id: subject,
  });

const show = (a: Answer) => `${a.status} ${a.error ?? JSON.stringify(a.body)}`;

/** Runs `fn` against the database `url` with a connection of its own (the test's, not a server's). */
async function withPg<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** lease id → state, for every lease row of the database. */
async function leaseStates(url: string): Promise<Map<string, string>> {
  const r = await withPg(url, (c) =>
    c.query<{ id: string; state: string }>('SELECT id, state FROM leases'),
  );
  return new Map(r.rows.map((row) => [row.id, row.state]));
}

/** Active leases per entitlement, beside its seats (from the stored policy). */
async function activeVsSeats(url: string) {
  const r = await withPg(url, (c) =>
    c.query<{ id: string; policy_json: string; active: string }>(
      `SELECT e.id, e.policy_json, count(l.id) AS active
         FROM entitlements e LEFT JOIN leases l ON l.entitlement_id = e.id AND l.state = 'active'
        GROUP BY e.id, e.policy_json`,
    ),
  );
  return r.rows.map((row) => ({
    id: row.id,
    active: Number(row.active),
    seats: (JSON.parse(row.policy_json) as { max_seats: number }).max_seats,
  }));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` every 100 ms until it holds or `ms` pass; whether it held. */
async function within(ms: number, probe: () => Promise<boolean>): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await probe()) return true;
    await sleep(100);
  }
  return false;
}

describe('two servers on one PostgreSQL database', () => {
  it(
    '300 clients racing for 10 seats through both: exactly 10 granted',
    { timeout: 60_000 },
    async () => {
      const url = await freshPgUrl('failover_race');
      const { servers: pair, ents } = await twoServers(url, 'race', { p: 10 });
      const answers = await Promise.all(
        Array.from({ length: 300 }, (_, i) => grant(pair[i % 2]!.base, 'p', `racer-${i}`)),
      );
      const granted = answers.filter((a) => a.status === 201);
      const refused = answers.filter(
        (a) => a.status === 409 && a.body?.error?.code === 'seats_exhausted',
      );
      const other = answers.filter((a) => !granted.includes(a) && !refused.includes(a));
      expect(other.map(show), 'answers other than 201 and 409 seats_exhausted').toEqual([]);
      expect(granted).toHaveLength(10);
      expect(refused).toHaveLength(290);

      // The database holds exactly those 10, active.
      const states = await leaseStates(url);
      expect([...states.values()]).toEqual(Array(10).fill('active'));
      expect(new Set(states.keys())).toEqual(new Set(granted.map((a) => a.body.lease_id)));
      expect(await activeVsSeats(url)).toEqual([{ id: ents.p, active: 10, seats: 10 }]);
      // One audit chain for both servers, checked by the CLI on either node's directory; the
      // database's pages are not claimed checked (PostgreSQL's own).
      expect(await bpls(url, path.join(root, 'race', 'b'), ['audit', 'verify'])).toMatchObject({
        ok: true,
        integrity_check: { ok: null, skipped: expect.stringContaining('PostgreSQL') },
      });
      // SIGTERM: the drain runs to its end, last line included.
      expect(await pair[1]!.stop(15_000)).toEqual({ code: 0, signal: null });
      expect(pair[1]!.stderr()).toMatch(/"msg":"stopped"/);
    },
  );

  it(
    'a client waiting for a seat on one server gets the seat another server frees, within about a second',
    { timeout: 60_000 },
    async () => {
      const url = await freshPgUrl('failover_queue');
      const { servers: pair } = await twoServers(url, 'queue', { q: 1 });
      const [a, b] = pair;
      const held = await grant(b!.base, 'q', 'holder');
      expect(held.status, show(held)).toBe(201);
      const started = Date.now();
      const waiting = call(a!.base, '/v1/license/lease', {
        product_id: 'q',
        tenant_id: 't',
        subject_type: 'user',
        subject_id: 'waiter',
        wait_seconds: 6,
      });
      await sleep(300);
      const released = await call(b!.base, '/v1/license/lease/release', {
        lease_id: held.body.lease_id,
      });
      expect(released.status, show(released)).toBe(200);
      const got = await waiting;
      expect(got.status, show(got)).toBe(201);
      // Woken by its server's look each second, not by its deadline (6 s).
      expect(Date.now() - started).toBeLessThan(3000);
      expect([...(await leaseStates(url)).values()].sort()).toEqual(['active', 'released']);
    },
  );

  it(
    'one server SIGKILLed under load: the other keeps answering, no acknowledged lease is lost',
    { timeout: 60_000 },
    async () => {
      const url = await freshPgUrl('failover_kill');
      // p: room for every grant; q: 5 seats the loops keep fighting for (over-grant would show).
      const { servers: pair } = await twoServers(url, 'kill', { p: 5000, q: 5 });
      const [victim, survivor] = pair as [ServeHandle, ServeHandle];
      /** lease id → the last state a server acknowledged for it ('active' after a 201 or 200 renew). */
      const acked = new Map<string, 'active' | 'released'>();
      const fromSurvivor: string[] = [];
      const victimBeforeKill: string[] = [];
      let killed = false;
      let n = 0;
      const LOAD_MS = 1500;
      const AFTER_KILL_MS = 1500;
      const started = performance.now();

      const loop = async (s: ServeHandle) => {
        const bad = (a: Answer, what: string) => {
          if (s === survivor) fromSurvivor.push(`${what}: ${show(a)}`);
          else if (!killed) victimBeforeKill.push(`${what}: ${show(a)}`);
        };
        while (performance.now() - started < LOAD_MS + AFTER_KILL_MS) {
          if (s === victim && killed) return;
          const i = n++;
          const product = i % 4 === 0 ? 'q' : 'p';
          const g = await grant(s.base, product, `k-${i}`);
          if (g.status !== 201) {
            if (!(product === 'q' && g.status === 409 && g.body?.error?.code === 'seats_exhausted'))
              bad(g, `grant ${product}`);
            continue;
          }
          const id = g.body.lease_id as string;
          acked.set(id, 'active');
          const r = await call(s.base, '/v1/license/lease/renew', { lease_id: id });
          if (r.status !== 200) {
            bad(r, 'renew');
            continue;
          }
          if (i % 3 === 0 || product === 'q') {
            const rel = await call(s.base, '/v1/license/lease/release', { lease_id: id });
            if (rel.status === 200 && rel.body.state === 'released') acked.set(id, 'released');
            else bad(rel, 'release');
          }
        }
      };
      const load = Promise.all(pair.flatMap((s) => Array.from({ length: 6 }, () => loop(s))));
      await sleep(LOAD_MS);
      const ackedBeforeKill = acked.size;
      killed = true;
      victim.child.kill('SIGKILL');
      await load;
      expect(await victim.exited).toEqual({ code: null, signal: 'SIGKILL' });

      expect(victimBeforeKill, 'failures from the victim before the kill').toEqual([]);
      expect(fromSurvivor, 'failures from the surviving server').toEqual([]);
      expect(ackedBeforeKill).toBeGreaterThan(0);
      expect(acked.size, 'the survivor granted after the kill').toBeGreaterThan(ackedBeforeKill);

      // Every acknowledged lease is in the database: released if its release was acknowledged,
      // else active (or released, when a release committed but its answer died with the victim).
      const states = await leaseStates(url);
      const wrong = [...acked].filter(([id, last]) => {
        const stored = states.get(id);
        return last === 'released'
          ? stored !== 'released'
          : stored !== 'active' && stored !== 'released';
      });
      expect(wrong.map(([id, last]) => `${id}: acked ${last}, stored ${states.get(id)}`)).toEqual(
        [],
      );
      for (const e of await activeVsSeats(url)) expect(e.active).toBeLessThanOrEqual(e.seats);

      // The survivor still grants, and its lease is stored.
      const after = await grant(survivor.base, 'p', 'after-kill');
      expect(after.status, show(after)).toBe(201);
      expect((await leaseStates(url)).get(after.body.lease_id)).toBe('active');
      console.info(
        `pg failover: ${ackedBeforeKill} leases acknowledged before the SIGKILL, ${acked.size} in all`,
      );
    },
  );
});

describe('PostgreSQL restarted or crashed under load', () => {
  let cluster: PgCluster;
  let url: string;
  let pair: [ServeHandle, ServeHandle];
  let token: string;
  /** Lease ids acknowledged (201) so far, by either server. */
  const acked: string[] = [];

  beforeAll(async () => {
    cluster = await startCluster();
    clusters.push(cluster);
    url = await createDatabase(cluster.url, 'failover_outage');
    const made = await twoServers(url, 'outage', { p: 100_000, w: 1 });
    pair = made.servers as [ServeHandle, ServeHandle];
    token = made.token;
  }, 120_000);

  /**
   * Grants through both servers (4 loops each) until `stop()`; every answer must be a 201 or a 503
   * `storage_unavailable`/`busy` with Retry-After. Returns the unexpected answers and the counts.
   */
  function loadUntilStopped() {
    let stopped = false;
    let i = 0;
    const unexpected: string[] = [];
    const counts = { granted: 0, unavailable: 0 };
    const loop = async (s: ServeHandle) => {
      while (!stopped) {
        const a = await grant(s.base, 'p', `o-${i++}`);
        if (a.status === 201) {
          acked.push(a.body.lease_id);
          counts.granted++;
        } else if (
          a.status === 503 &&
          ['storage_unavailable', 'busy'].includes(a.body?.error?.code) &&
          Number(a.retryAfter) >= 1
        ) {
          counts.unavailable++;
          await sleep(20);
        } else {
          unexpected.push(`${s.base}: ${show(a)} retry-after ${a.retryAfter}`);
          await sleep(20);
        }
      }
    };
    const running = Promise.all(pair.flatMap((s) => Array.from({ length: 4 }, () => loop(s))));
    return {
      unexpected,
      counts,
      async stop() {
        stopped = true;
        await running;
      },
    };
  }

  /** Both servers ready again and granting, within a few seconds of PostgreSQL's return. */
  async function expectRecovered(label: string) {
    for (const s of pair) {
      const ready = await within(5000, async () => (await call(s.base, '/readyz')).status === 200);
      expect(ready, `${s.base} /readyz 200 again after ${label}`).toBe(true);
      const g = await grant(s.base, 'p', `after-${label}-${s.base}`);
      expect(g.status, show(g)).toBe(201);
      acked.push(g.body.lease_id);
    }
  }

  it(
    'a restart (fast shutdown, start): 503 with Retry-After meanwhile, then serving again',
    { timeout: 60_000 },
    async () => {
      const load = loadUntilStopped();
      await sleep(500);
      const before = load.counts.granted;
      const readiness: number[] = [];
      let polling = true;
      const poll = (async () => {
        while (polling) {
          for (const s of pair) readiness.push((await call(s.base, '/readyz')).status);
          await sleep(50);
        }
      })();
      await cluster.restart();
      await sleep(300);
      polling = false;
      await poll;
      await load.stop();
      expect(load.unexpected, 'answers other than 201 and 503 with Retry-After').toEqual([]);
      expect(before, 'grants before the restart').toBeGreaterThan(0);
      expect(
        readiness.filter((s) => s !== 200 && s !== 503),
        '/readyz answers',
      ).toEqual([]);
      for (const s of pair) expect(s.child.exitCode, `${s.base} still runs`).toBeNull();
      await expectRecovered('restart');
      console.info(
        `pg restart: ${load.counts.granted} granted, ${load.counts.unavailable} answered 503, /readyz 503 ${readiness.filter((s) => s === 503).length} of ${readiness.length}`,
      );
    },
  );

  it(
    'a crash (immediate stop) held over a second: 503s, /readyz 503, a waiter answered 503, then serving again',
    { timeout: 60_000 },
    async () => {
      // A client waiting for the one seat of `w` (wait_seconds) whose deadline comes in the outage.
      const holder = await grant(pair[0].base, 'w', 'holder');
      expect(holder.status, show(holder)).toBe(201);
      acked.push(holder.body.lease_id);
      const waiter = call(pair[1].base, '/v1/license/lease', {
        product_id: 'w',
        tenant_id: 't',
        subject_type: 'user',
        subject_id: 'waiter',
        wait_seconds: 1,
      });
      const load = loadUntilStopped();
      await sleep(300);
      await cluster.kill();
      await sleep(300);
      // PostgreSQL is down: every server answers 503 with Retry-After (a grant, a renewal and a
      // release of a lease granted before, an admin read), and is not ready.
      for (const s of pair) {
        for (const a of [
          await grant(s.base, 'p', `down-${s.base}`),
          await call(s.base, '/v1/license/lease/renew', { lease_id: acked[0] }),
          await call(s.base, '/v1/license/lease/release', { lease_id: acked[0] }),
          await call(s.base, '/v1/leases?limit=5', undefined, token),
        ]) {
          expect(a.status, show(a)).toBe(503);
          expect(a.body.error.code).toBe('storage_unavailable');
          expect(Number(a.retryAfter)).toBeGreaterThanOrEqual(1);
        }
        const r = await call(s.base, '/readyz');
        expect(r.status, show(r)).toBe(503);
        expect(r.body).toEqual({ status: 'storage_unavailable' });
      }
      // The waiter's deadline came while PostgreSQL was down: answered 503, its server alive.
      const waited = await waiter;
      expect(waited.status, show(waited)).toBe(503);
      expect(waited.body.error.code).toBe('storage_unavailable');
      expect(Number(waited.retryAfter)).toBeGreaterThanOrEqual(1);
      await sleep(500);
      const unavailable = load.counts.unavailable;
      await cluster.restart();
      await expectRecovered('crash');
      await load.stop();
      expect(load.unexpected, 'answers other than 201 and 503 with Retry-After').toEqual([]);
      expect(unavailable, '503s answered during the outage').toBeGreaterThan(0);
      for (const s of pair) expect(s.child.exitCode, `${s.base} still runs`).toBeNull();

      // Every lease acknowledged before, during and after both outages is stored, active (the
      // release refused in the outage changed nothing).
      const states = await leaseStates(url);
      const missing = acked.filter((id) => states.get(id) !== 'active');
      expect(missing, 'acknowledged leases missing after the outages').toEqual([]);
      for (const e of await activeVsSeats(url)) expect(e.active).toBeLessThanOrEqual(e.seats);
    },
  );

  it(
    'SIGTERM while PostgreSQL is down: a waiting client is answered 503, the server still stops',
    { timeout: 60_000 },
    async () => {
      // `w`'s one seat is still held (the test before): this client waits for it.
      const waiter = call(pair[0].base, '/v1/license/lease', {
        product_id: 'w',
        tenant_id: 't',
        subject_type: 'user',
        subject_id: 'waiter-at-shutdown',
        wait_seconds: 30,
      });
      await sleep(300);
      await cluster.kill();
      const exit = pair[0].stop(15_000);
      const waited = await waiter;
      expect(waited.status, show(waited)).toBe(503);
      expect(waited.body.error.code).toBe('storage_unavailable');
      expect(await exit).toEqual({ code: 0, signal: null });
      // The drain ran to its end: its last line is there (the process did not just run out of
      // things to wait for while a commit's answer was pending).
      expect(pair[0].stderr()).toMatch(/"msg":"stopped"/);
      // The other server rides the outage out and serves once PostgreSQL is back.
      await cluster.restart();
      const ready = await within(
        5000,
        async () => (await call(pair[1].base, '/readyz')).status === 200,
      );
      expect(ready).toBe(true);
    },
  );
});
