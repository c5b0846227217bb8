/**
 * Queueing (README "Floating extras"): a lease request with wait_seconds waits first come first
 * served for a seat freed by a release, a revocation or an expiry; 409 at its deadline; bounded;
 * a client that hangs up leaves the line. Real database, the app in process, and a real socket
 * for the disconnect.
 */
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, seedEntitlement, type Harness } from '../../../test/helpers.ts';
import { createLeaseService } from '../../domain/leases.ts';
import { CLI, runProcess, startServe } from '../../../test/spawn.ts';
import { createWorld, ent } from '../../../test/sync/world.ts';

let h: Harness;
beforeEach(() => void (h = createHarness()));
afterEach(() => h.close());

const ask = (who: string, extra: Record<string, unknown> = {}) =>
  h.req(
    'POST',
    '/v1/license/lease',
    {
      product_id: 'your-product-id',
      tenant_id: 'customer-tenant-id',
      subject_type: 'machine',
      subject_id: who,
      ...extra,
    },
    null,
  );
const giveBack = (leaseId: string) =>
  h.req('POST', '/v1/license/lease/release', { lease_id: leaseId }, null);
async function concurrent(seats: number, extra: Record<string, unknown> = {}): Promise<string> {
  const made = await h.req('POST', '/v1/entitlements', {
    ...seedEntitlement,
    policy_json: { type: 'concurrent', max_seats: seats, ...extra },
  });
  expect(made.status, made.text).toBe(201);
  return made.body.entitlement_id;
}
/** Resolves once `n` requests wait in the queue (the event loop turns meanwhile). */
async function waiting(n: number): Promise<void> {
  for (let i = 0; i < 400 && h.services.leases.queued() !== n; i++)
    await new Promise((r) => setTimeout(r, 5));
  expect(h.services.leases.queued()).toBe(n);
}
const holders = (ent: string) =>
  (
    h.store.db
      .prepare(
        "SELECT subject_id FROM leases WHERE entitlement_id = ? AND state = 'active' ORDER BY seq",
      )
      .all(ent) as { subject_id: string }[]
  ).map((r) => r.subject_id);
const denials = () =>
  h.store.db.prepare("SELECT count(*) FROM lease_events WHERE kind = 'deny'").pluck().get();

describe('the lease queue', () => {
  it('serves waiters in arrival order, one per freed seat; newcomers do not jump it; the rest get 409 at their deadline', async () => {
    const ent = await concurrent(2);
    const a = await ask('a');
    const b = await ask('b');
    const pending: Promise<Awaited<ReturnType<typeof ask>>>[] = [];
    for (const [i, seconds] of [
      [1, 10],
      [2, 10],
      [3, 1],
      [4, 1],
    ] as const) {
      pending.push(ask(`w${i}`, { wait_seconds: seconds }));
      await waiting(i);
    }
    const status = await h.req(
      'GET',
      '/v1/license/status?product_id=your-product-id&subject_type=machine&subject_id=a',
    );
    expect(status.body.usage).toMatchObject({ concurrent_seats_used: 2, queued: 4 });
    const metrics = await h.req('GET', '/metrics', undefined, null);
    expect(metrics.text).toContain('bpls_lease_queue_waiting 4');

    // A seat frees: the first waiter has it, not a newcomer asking at the same moment.
    const [, newcomer] = await Promise.all([giveBack(a.body.lease_id), ask('newcomer')]);
    expect(newcomer.status).toBe(409);
    const w1 = await pending[0]!;
    expect(w1.status).toBe(201);
    expect(holders(ent)).toEqual(['b', 'w1']);

    await giveBack(b.body.lease_id);
    const w2 = await pending[1]!;
    expect(w2.status).toBe(201);
    expect(holders(ent)).toEqual(['w1', 'w2']);
    expect(h.store.leases.counters(ent).activeLeases).toBe(2);

    // No seat frees for the last two: each is refused at its deadline, and only then denied.
    expect(denials()).toBe(1);
    const [w3, w4] = await Promise.all([pending[2]!, pending[3]!]);
    for (const w of [w3, w4]) {
      expect(w.status).toBe(409);
      expect(w.body.error).toMatchObject({
        code: 'seats_exhausted',
        details: { entitlement_id: ent, waited_seconds: 1 },
      });
    }
    expect(denials()).toBe(3);
    expect(h.services.leases.queued()).toBe(0);
    expect(holders(ent)).toEqual(['w1', 'w2']);
  });

  it('a change to the entitlement answers its waiters at once: more seats grant, a suspension refuses', async () => {
    const ent = await concurrent(1);
    expect((await ask('a')).status).toBe(201);
    const w1 = ask('w1', { wait_seconds: 2 });
    await waiting(1);
    const raised = await h.req('PATCH', `/v1/entitlements/${ent}`, {
      policy_json: { type: 'concurrent', max_seats: 2 },
    });
    expect(raised.status, raised.text).toBe(200);
    // Granted on the change, not refused at the deadline with the policy of queue time.
    const granted = await w1;
    expect(granted.status, granted.text).toBe(201);
    expect(holders(ent)).toEqual(['a', 'w1']);
    expect(h.services.leases.queued()).toBe(0);

    const w2 = ask('w2', { wait_seconds: 2 });
    await waiting(1);
    const suspended = await h.req('POST', `/v1/entitlements/${ent}/suspend`);
    expect(suspended.status, suspended.text).toBe(200);
    const refused = await w2;
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('entitlement_inactive');
    expect(h.services.leases.queued()).toBe(0);
    expect(holders(ent)).toEqual(['a', 'w1']);
    const denied = h.store.db
      .prepare("SELECT reason FROM lease_events WHERE kind = 'deny' AND subject_id = 'w2'")
      .pluck()
      .all();
    expect(denied).toEqual(['entitlement_inactive']);
  });

  it('a new entitlement of the same tenant and product serves the waiters of a full one', async () => {
    const full = await concurrent(1);
    expect((await ask('a')).status).toBe(201);
    const w = ask('w', { wait_seconds: 2 });
    await waiting(1);
    const more = await concurrent(1);
    const granted = await w;
    expect(granted.status, granted.text).toBe(201);
    expect(holders(full)).toEqual(['a']);
    expect(holders(more)).toEqual(['w']);
    expect(h.services.leases.queued()).toBe(0);
  });

  it('the refusal at the deadline states the policy of then, not of queue time', async () => {
    const ent = await concurrent(2, { overdraft_seats: 1 });
    for (const who of ['a', 'b', 'c']) expect((await ask(who)).status).toBe(201);
    const w = ask('w', { wait_seconds: 1 });
    await waiting(1);
    const cut = await h.req('PATCH', `/v1/entitlements/${ent}`, {
      policy_json: { type: 'concurrent', max_seats: 1 },
    });
    expect(cut.status, cut.text).toBe(200);
    const late = await w;
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe('seats_exhausted');
    expect(late.body.error.details).toMatchObject({
      entitlement_id: ent,
      max_seats: 1,
      waited_seconds: 1,
    });
    expect(late.body.error.details.overdraft_seats).toBeUndefined();
    expect(late.body.error.message).toContain('1 seat');
    expect(holders(ent)).toEqual(['a', 'b', 'c']);
  });

  it('exactly as many winners as seats freed, under a crowd', async () => {
    const ent = await concurrent(3);
    const first = await Promise.all(['a', 'b', 'c'].map((who) => ask(who)));
    const crowd = Array.from({ length: 12 }, (_, i) => ask(`c${i}`, { wait_seconds: 2 }));
    await waiting(12);
    await Promise.all([giveBack(first[0]!.body.lease_id), giveBack(first[2]!.body.lease_id)]);
    const answers = await Promise.all(crowd);
    const won = answers.filter((r) => r.status === 201);
    expect(won).toHaveLength(2);
    // The first two to arrive.
    expect(holders(ent)).toEqual(['b', 'c0', 'c1']);
    expect(answers.filter((r) => r.status === 409)).toHaveLength(10);
    expect(h.store.leases.counters(ent).activeLeases).toBe(3);
  });

  it('a newcomer cannot take an expired seat while someone waits for it', async () => {
    const ent = await concurrent(1, { lease_ttl_seconds: 60 });
    await ask('a');
    const w = ask('w', { wait_seconds: 10 });
    await waiting(1);
    // a's time is up but nothing has marked it: a newcomer's grant would reclaim it for itself.
    h.clock.advance(61_000);
    const newcomer = await ask('newcomer');
    expect(newcomer.status).toBe(409);
    expect((await w).status).toBe(201);
    expect(holders(ent)).toEqual(['w']);
  });

  it('a sweep and a revocation free seats for the queue too', async () => {
    const ent = await concurrent(1, { lease_ttl_seconds: 60 });
    const held = await ask('a');
    const w = ask('w', { wait_seconds: 10 });
    const v = ask('v', { wait_seconds: 10 });
    await waiting(2);
    h.clock.advance(61_000);
    expect(h.services.leases.sweep()).toBe(1);
    const won = await w;
    expect(won.status).toBe(201);
    expect(holders(ent)).toEqual(['w']);
    expect(held.body.lease_id).not.toBe(won.body.lease_id);
    const revoked = await h.req('POST', `/v1/leases/${won.body.lease_id}/revoke`);
    expect(revoked.status).toBe(200);
    expect((await v).status).toBe(201);
    expect(holders(ent)).toEqual(['v']);
  });

  it('an expiry frees a seat for a waiter on a timer, with no release or sweep (on SQLite no polling; on PostgreSQL its look each second)', async () => {
    const ent = await concurrent(1, { lease_ttl_seconds: 5 });
    await ask('a');
    const w = ask('w', { wait_seconds: 20 });
    await waiting(1);
    const tries = () =>
      h.store.db
        .prepare("SELECT count(*) FROM lease_events WHERE kind IN ('grant', 'deny')")
        .pluck()
        .get();
    const before = tries();
    // The server's clock passes a's expiry; the queue's timer (set for it) fires ~5 s later.
    h.clock.advance(5_000);
    const started = Date.now();
    const won = await w;
    expect(won.status).toBe(201);
    expect(holders(ent)).toEqual(['w']);
    // One grant: the waiter was tried once, when the seat freed.
    expect(tries()).toBe(Number(before) + 1);
    if (h.store.kind === 'sqlite') {
      // One serving process: the expiry's timer, nothing sooner.
      expect(Date.now() - started).toBeGreaterThan(3_000);
    } else {
      // Other nodes free seats unheard of: the waiter looks again each second.
      expect(Date.now() - started).toBeLessThan(3_000);
    }
  }, 15_000);

  it('requests that may not wait, or for other refusals, are answered at once', async () => {
    await concurrent(1);
    await ask('a');
    const full = await ask('b');
    expect(full.status).toBe(409);
    expect(h.services.leases.queued()).toBe(0);
    const wrong = await ask('b', { wait_seconds: 5, features: ['nope'] });
    expect(wrong.status).toBe(403);
    expect(wrong.body.error.code).toBe('feature_not_entitled');
    const tooLong = await ask('b', { wait_seconds: 301 });
    expect(tooLong.status).toBe(400);
    expect(h.services.leases.queued()).toBe(0);
  });
});

describe('queue bounds', () => {
  it('refuses with queue_full past the per-entitlement and the global cap, nothing queued', async () => {
    const ent = await concurrent(1);
    const other = await concurrent(1);
    const leases = createLeaseService({
      store: h.store,
      clock: h.clock,
      key: h.key,
      serverId: h.info.server_id,
      timeGuard: h.services.timeGuard,
      queueLimits: { perEntitlement: 2, total: 3 },
    });
    const req = (who: string, entitlementId: string) => ({
      productId: 'your-product-id',
      tenantId: 'customer-tenant-id',
      subjectType: 'machine' as const,
      subjectId: who,
      entitlementId,
      waitSeconds: 1,
    });
    await leases.grant({ ...req('a', ent), waitSeconds: undefined });
    await leases.grant({ ...req('b', other), waitSeconds: undefined });
    const queued = [leases.grant(req('w1', ent)), leases.grant(req('w2', ent))];
    queued.forEach((p) => p.catch(() => {}));
    const third = leases.grant(req('w3', ent));
    await expect(third).rejects.toMatchObject({
      code: 'seats_exhausted',
      details: { reason: 'queue_full', entitlement_id: ent },
    });
    const o1 = leases.grant(req('o1', other));
    o1.catch(() => {});
    await expect(leases.grant(req('o2', other))).rejects.toMatchObject({
      details: { reason: 'queue_full' },
    });
    expect(leases.queued()).toBe(3);
    expect(leases.queued(ent)).toBe(2);
    await Promise.allSettled([...queued, o1]);
    expect(leases.queued()).toBe(0);
  });
});

describe('a waiting client that disconnects', () => {
  let node: Server;
  afterEach(() => new Promise<void>((r) => node.close(() => r())));

  it('leaves the queue at once, and the freed seat goes to the next in line', async () => {
    const ent = await concurrent(1);
    node = createServer((req, res) => h.app.serveNode(req, res));
    await new Promise<void>((r) => node.listen(0, '127.0.0.1', r));
    const port = (node.address() as AddressInfo).port;
    const held = await ask('a');

    const body = JSON.stringify({
      product_id: 'your-product-id',
      tenant_id: 'customer-tenant-id',
      subject_type: 'machine',
      subject_id: 'quitter',
      wait_seconds: 60,
    });
    const quitter = httpRequest({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/v1/license/lease',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    quitter.on('error', () => {});
    quitter.end(body);
    await waiting(1);
    const next = ask('next', { wait_seconds: 10 });
    await waiting(2);

    quitter.destroy();
    await waiting(1);
    await giveBack(held.body.lease_id);
    expect((await next).status).toBe(201);
    expect(holders(ent)).toEqual(['next']);
    expect(
      h.store.db.prepare("SELECT count(*) FROM leases WHERE subject_id = 'quitter'").pluck().get(),
    ).toBe(0);
  });
});

describe('a server that stops', () => {
  it('answers its waiting lease requests at once (409, reason shutting_down) and exits 0', async () => {
    const data = join(h.dir, 'served');
    const init = await runProcess(CLI, ['init', '--data-dir', data, '--json']);
    expect(init.code, init.stderr).toBe(0);
    const token = (JSON.parse(init.stdout) as { admin_token: string }).admin_token;
    const s = await startServe(CLI, ['--data-dir', data, '--port', '0', '--host', '127.0.0.1']);
    try {
      const post = (path: string, body: unknown, auth = false) =>
        fetch(`${s.base}${path}`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(auth ? { authorization: `Bearer ${token}` } : {}),
          },
          body: JSON.stringify(body),
        });
      const made = await post(
        '/v1/entitlements',
        {
          ...seedEntitlement,
          ends_at: '2099-01-01T00:00:00Z',
          policy_json: { type: 'concurrent', max_seats: 1 },
        },
        true,
      );
      expect(made.status).toBe(201);
      const who = (id: string) => ({
        product_id: 'your-product-id',
        tenant_id: 'customer-tenant-id',
        subject_type: 'machine',
        subject_id: id,
      });
      expect((await post('/v1/license/lease', who('holder'))).status).toBe(201);
      const waiter = post('/v1/license/lease', { ...who('waiter'), wait_seconds: 120 });
      let queued = false;
      for (let i = 0; i < 200 && !queued; i++) {
        const m = await (await fetch(`${s.base}/metrics`)).text();
        queued = m.includes('bpls_lease_queue_waiting 1');
        if (!queued) await new Promise((r) => setTimeout(r, 10));
      }
      expect(queued).toBe(true);
      const stopping = Date.now();
      const exited = s.stop();
      const answer = await waiter;
      expect(answer.status).toBe(409);
      expect(
        ((await answer.json()) as { error: { details: unknown } }).error.details,
      ).toMatchObject({ reason: 'shutting_down' });
      expect(Date.now() - stopping).toBeLessThan(5_000);
      expect((await exited).code).toBe(0);
    } finally {
      await s.stop();
    }
  }, 30_000);
});

describe('a bundle import', () => {
  it('that adds seats to an entitlement answers its waiters at once', async () => {
    const w = createWorld();
    try {
      const policy = (seats: number) => ({ type: 'concurrent', max_seats: seats });
      await w.importFile(w.sign(1, { entitlements: [ent('ent_b', { policy_json: policy(1) })] }));
      const leaseOn = (who: string, extra: Record<string, unknown> = {}) =>
        w.h.req(
          'POST',
          '/v1/license/lease',
          { tenant_id: 'acme', product_id: 'cad', subject_type: 'user', subject_id: who, ...extra },
          null,
        );
      expect((await leaseOn('a')).status).toBe(201);
      const waiter = leaseOn('b', { wait_seconds: 2 });
      for (let i = 0; i < 400 && w.h.services.leases.queued() !== 1; i++)
        await new Promise((r) => setTimeout(r, 5));
      expect(w.h.services.leases.queued()).toBe(1);
      await w.importFile(
        w.sign(2, { entitlements: [ent('ent_b', { policy_json: policy(2), rev: 2 })] }),
      );
      const answer = await waiter;
      expect(answer.status, answer.text).toBe(201);
      expect(w.h.services.leases.queued()).toBe(0);
      expect(w.h.store.leases.counters('ent_b').activeLeases).toBe(2);
    } finally {
      w.h.close();
    }
  });
});

describe('the clock guard', () => {
  it('refuses borrows and waits on a bundle-managed entitlement while the clock is behind: 503, nothing queued', async () => {
    const w = createWorld();
    try {
      const policy = { type: 'concurrent', max_seats: 1, max_borrow_hours: 24 };
      await w.importFile(w.sign(1, { entitlements: [ent('ent_b', { policy_json: policy })] }));
      const body = (who: string, extra: Record<string, unknown>) => ({
        tenant_id: 'acme',
        product_id: 'cad',
        subject_type: 'user',
        subject_id: who,
        ...extra,
      });
      const leaseOn = (b: Record<string, unknown>) => w.h.req('POST', '/v1/license/lease', b, null);
      expect((await leaseOn(body('a', { borrow_hours: 24 }))).body.borrowed).toBe(true);
      w.h.clock.advance(-2 * 3_600_000);
      for (const extra of [{ borrow_hours: 24 }, { wait_seconds: 5 }]) {
        const r = await leaseOn(body('b', extra));
        expect(r.status).toBe(503);
        expect(r.body.error.code).toBe('clock_suspect');
      }
      expect(w.h.services.leases.queued()).toBe(0);
      expect(w.h.store.leases.liveBorrowedCount('ent_b', w.h.clock.now())).toBe(1);
    } finally {
      w.h.close();
    }
  });
});
