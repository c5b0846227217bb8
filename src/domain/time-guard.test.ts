import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, seedEntitlement, type Harness } from '../../test/helpers.ts';
import { createTimeGuard } from './time-guard.ts';
import { ManualClock } from '../clock.ts';

let h: Harness;
beforeEach(async () => {
  h = createHarness();
  await h.req('POST', '/v1/entitlements', { ...seedEntitlement, ends_at: '2030-01-01T00:00:00Z' });
});
afterEach(() => h.close());

const lease = (id: string) => h.req('POST', '/v1/license/lease', { product_id: 'your-product-id', tenant_id: 'customer-tenant-id', subject_type: 'user', subject_id: id }, null);
const actions = () => h.store.audit.page(0, 1000).map((r) => r.action);

describe('the clock high-water mark', () => {
  it('refuses grants and renewals with clock_suspect when the clock reads over an hour behind, and recovers when fixed', async () => {
    const first = await lease('u1');
    expect(first.status).toBe(201);
    h.clock.advance(-2 * 3_600_000);
    const r = await lease('u2');
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('clock_suspect');
    expect(r.body.error.message).toContain('more than an hour behind the last trusted time 2024-01-15T10:30:00.000Z');
    const renew = await h.req('POST', '/v1/license/lease/renew', { lease_id: first.body.lease_id }, null);
    expect(renew.body.error.code).toBe('clock_suspect');
    expect((await h.req('GET', '/readyz', undefined, null)).status).toBe(503);
    // One audit row and one event per episode, not one per refused request.
    expect(actions().filter((a) => a === 'clock.suspect')).toHaveLength(1);
    expect(h.store.state.clockEvents(0).map((e) => e.kind)).toEqual(['suspect']);
    expect((h.store.db.prepare("SELECT count(*) AS n FROM leases WHERE subject_id = 'u2'").get() as { n: number }).n).toBe(0);

    h.clock.advance(2 * 3_600_000);
    expect((await lease('u2')).status).toBe(201);
    expect(actions()).toContain('clock.recovered');
    expect((await h.req('GET', '/readyz', undefined, null)).status).toBe(200);
  });

  it('records the suspect episode even when its batch is rolled back and run again', async () => {
    expect((await lease('u1')).status).toBe(201);
    h.clock.advance(-2 * 3_600_000);
    // In one group commit: a refused lease (the episode starts: event and audit row), and a piece
    // that fails after writing, which makes the batch roll back and run again piece by piece.
    const [refused, broken] = await Promise.allSettled([
      h.services.leases.grant({ productId: 'your-product-id', tenantId: 'customer-tenant-id', subjectType: 'user', subjectId: 'u2' }),
      h.store.batch(() => {
        h.store.state.set('scratch', 'x');
        throw new Error('boom');
      }),
    ]);
    expect(refused.status === 'rejected' && refused.reason.code).toBe('clock_suspect');
    expect(broken.status).toBe('rejected');
    expect(h.store.state.get('scratch')).toBeUndefined();
    expect(actions().filter((a) => a === 'clock.suspect')).toHaveLength(1);
    expect(h.store.state.clockEvents(0).map((e) => e.kind)).toEqual(['suspect']);
  });

  it('tolerates a clock up to an hour behind', async () => {
    await lease('u1');
    h.clock.advance(-59 * 60_000);
    expect((await lease('u2')).status).toBe(201);
  });

  it('keeps the mark across a restart', async () => {
    await lease('u1');
    h.clock.advance(5 * 60_000);
    await lease('u2');
    h.clock.advance(-3 * 3_600_000);
    const fresh = createTimeGuard({ store: h.store, clock: h.clock });
    expect(fresh.status().suspect).toBe(true);
    expect(fresh.status().high_water_mark).toBe('2024-01-15T10:35:00.000Z');
  });

  it('lets a vendor-signed time replace a mark that ran ahead', () => {
    const clock = new ManualClock('2031-01-01T00:00:00Z');
    const g = createTimeGuard({ store: h.store, clock });
    expect(g.assess(clock.now())).toBeNull();
    clock.set('2025-01-01T00:00:00Z');
    expect(g.assess(clock.now())?.code).toBe('clock_suspect');
    g.vouch(Date.parse('2024-12-31T23:58:00Z'));
    expect(g.assess(clock.now())).toBeNull();
    expect(h.store.state.clockEvents(0).map((e) => e.kind)).toEqual(['suspect', 'vouched', 'recovered']);
  });

  it('catches a wall clock stepping back while running, with no traffic, through the monotonic clock', () => {
    const clock = new ManualClock('2024-06-01T00:00:00Z');
    let mono = 1000;
    const g = createTimeGuard({ store: h.store, clock, monotonicMs: () => mono });
    mono += 3 * 3_600_000;
    clock.set('2024-06-01T00:30:00Z');
    expect(g.assess(clock.now())?.code).toBe('clock_suspect');
    expect(g.status().high_water_mark).toBe('2024-06-01T03:00:00.000Z');
  });
});

describe('the clock guard and other connections', () => {
  it('adopts a vouch made by another process (the CLI importing a bundle) without a restart', async () => {
    const { openStore } = await import('../storage/store.ts');
    const { dataPaths } = await import('../data-dir.ts');
    await lease('u1');
    h.clock.advance(-3 * 3_600_000);
    expect((await lease('u2')).body.error.code).toBe('clock_suspect');
    const other = openStore(dataPaths(h.dir).db);
    try {
      createTimeGuard({ store: other, clock: h.clock }).vouch(h.clock.now() - 60_000);
    } finally {
      other.close();
    }
    expect((await lease('u2')).status).toBe(201);
  });
});
