// The clock guard (docs/design.md "Time"), with the wall clock and the monotonic clock both injected and
// stepped by hand, over a real database; a "restart" re-creates the services on the same file.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createWorld, ent, type World } from '../../test/sync/world.ts';
import { createServices } from '../context.ts';
import { createApp } from '../app.ts';
import { silentLogger } from '../log.ts';
import type { AnyStore } from '../storage/store.ts';
import { CLOCK_TOLERANCE_MS, createTimeGuard } from './time-guard.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const BUNDLE = { tenant_id: 'acme', product_id: 'cad', subject_type: 'user' } as const;
const MANUAL = { tenant_id: 'acme', product_id: 'cam', subject_type: 'user' } as const;

let w: World;
// performance.now() is fractional: so is this one, so a mark taken from it must be rounded.
let mono = 1234.567;
const stores: AnyStore[] = [];

type Rig = ReturnType<typeof boot>;

/** One server process on the world's database: its own connection, services and app. */
function boot() {
  const store = w.h.openOtherStore();
  const services = createServices(store, w.h.clock, w.h.key, w.h.info, { monotonicMs: () => mono });
  const app = createApp({ services, store, clock: w.h.clock, info: w.h.info, log: silentLogger });
  async function req(method: string, path: string, body?: unknown, auth = true) {
    const headers: Record<string, string> =
      body === undefined ? {} : { 'content-type': 'application/json' };
    if (auth) headers.authorization = `Bearer ${w.h.admin}`;
    const res = await app.request(path, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, body: json, text };
  }
  const rig = {
    store,
    services,
    req,
    lease: (who: typeof BUNDLE | typeof MANUAL, subject: string) =>
      req('POST', '/v1/license/lease', { ...who, subject_id: subject }, false),
    renew: (leaseId: string) =>
      req('POST', '/v1/license/lease/renew', { lease_id: leaseId }, false),
    release: (leaseId: string) =>
      req('POST', '/v1/license/lease/release', { lease_id: leaseId }, false),
  };
  stores.push(store);
  return rig;
}

/** A restart: this process ends, a new one starts on the same database (as the server does, it checks the clock at start). */
function restart(rig: Rig, monoAtStart = 7.25): Rig {
  rig.store.close();
  mono = monoAtStart;
  const next = boot();
  next.services.timeGuard.tick();
  return next;
}

/** Real time passes: both clocks move (the wall clock in whole ms, as Date.now() gives it). */
function pass(ms: number): void {
  w.h.clock.advance(Math.floor(ms));
  mono += ms;
}
/** The wall clock is stepped (an admin, NTP, libfaketime): the monotonic clock does not move. */
function step(ms: number): void {
  w.h.clock.advance(ms);
}

const kinds = () => w.h.store.state.clockEvents(0).map((e) => e.kind);
const auditCount = (action: string) =>
  w.h.store.audit.page(0, 10_000).filter((r) => r.action === action).length;
const leasesOf = (entitlementId: string, subject: string) =>
  (
    w.h.store.db
      .prepare(
        "SELECT count(*) AS n FROM leases WHERE entitlement_id = ? AND subject_id = ? AND state = 'active'",
      )
      .get(entitlementId, subject) as { n: number }
  ).n;

/** A world with a bundle-managed entitlement (acme/cad) and a manual one (acme/cam). */
async function setUp(): Promise<Rig> {
  w = createWorld();
  mono = 1234.567;
  const rig = boot();
  // Signed two days ago: a newer bundle (seq 2) must not be signed before it.
  await rig.services.sync.importFile(
    w.sign(1, { entitlements: [ent('ent_bundle')] }, { iatMs: w.h.clock.now() - 2 * DAY }),
    { actor: 'test' },
  );
  const manual = await rig.req('POST', '/v1/entitlements', {
    ...MANUAL,
    subject_type: undefined,
    policy_json: { type: 'concurrent', max_seats: 50 },
    starts_at: '2024-01-01T00:00:00Z',
    ends_at: '2030-01-01T00:00:00Z',
  });
  expect(manual.status, manual.text).toBe(201);
  manualId = manual.body.entitlement_id as string;
  return rig;
}
let manualId = '';

afterEach(() => {
  for (const st of stores.splice(0)) st.close();
  w?.h.close();
});

describe('the clock stepped back under a running server (issue 11.1)', () => {
  it('refuses bundle-managed grants and renewals with 503 clock_suspect (never 500), serves manual ones, records the episode once and closes it once', async () => {
    const s = await setUp();
    const b1 = await s.lease(BUNDLE, 'u1');
    const m1 = await s.lease(MANUAL, 'u1');
    expect([b1.status, m1.status]).toEqual([201, 201]);
    // Ten idle minutes (a fractional monotonic reading), then the wall clock is stepped back 2 h.
    pass(10 * 60_000);
    mono += 0.37;
    step(-2 * HOUR);

    const refused = await s.lease(BUNDLE, 'u2');
    expect(refused.status, refused.text).toBe(503);
    expect(refused.body.error.code).toBe('clock_suspect');
    expect(refused.body.error.details).toMatchObject({
      entitlement_id: 'ent_bundle',
      now: '2025-06-01T10:10:00Z',
      high_water_mark: '2025-06-01T12:10:00Z',
    });
    expect(refused.body.error.message).toContain(
      'more than an hour behind the last trusted time 2025-06-01T12:10:00Z',
    );
    expect(leasesOf('ent_bundle', 'u2')).toBe(0);
    expect((await s.renew(b1.body.lease_id)).body.error.code).toBe('clock_suspect');
    // The manual entitlement is the admin's own terms: served, renewed.
    expect((await s.lease(MANUAL, 'u2')).status).toBe(201);
    expect(leasesOf(manualId, 'u2')).toBe(1);
    expect((await s.renew(m1.body.lease_id)).status).toBe(200);
    // Releases always work.
    const released = await s.release(b1.body.lease_id);
    expect(released.status).toBe(200);
    expect(leasesOf('ent_bundle', 'u1')).toBe(0);
    for (let i = 0; i < 3; i++) expect((await s.lease(BUNDLE, `x${i}`)).status).toBe(503);

    // Reported: readyz, metrics, check.
    expect(await s.req('GET', '/readyz', undefined, false)).toMatchObject({
      status: 503,
      body: { status: 'clock_suspect' },
    });
    expect((await s.req('GET', '/metrics', undefined, false)).text).toContain(
      '\nbpls_clock_suspect 1\n',
    );
    expect((await s.req('GET', '/v1/entitlements/ent_bundle/check')).body).toMatchObject({
      can_lease: false,
      reason: 'clock_suspect',
    });
    expect((await s.req('GET', `/v1/entitlements/${manualId}/check`)).body).toMatchObject({
      can_lease: true,
    });

    // Once: one event, one audit row, whole-millisecond marks.
    const events = w.h.store.state.clockEvents(0);
    expect(events.map((e) => e.kind)).toEqual(['suspect']);
    expect(Number.isInteger(events[0]!.hwm)).toBe(true);
    expect(events[0]!.hwm).toBe(Date.parse('2025-06-01T12:10:00Z'));
    expect(auditCount('clock.suspect')).toBe(1);

    // The clock is fixed: the first grant is served and the episode closes, once.
    step(2 * HOUR);
    expect((await s.lease(BUNDLE, 'u3')).status).toBe(201);
    expect((await s.lease(BUNDLE, 'u4')).status).toBe(201);
    expect(kinds()).toEqual(['suspect', 'recovered']);
    expect(w.h.store.state.clockEvents(0)[1]!.details).toMatchObject({
      ended_by: 'clock',
      suspect_event: events[0]!.seq,
    });
    expect(auditCount('clock.recovered')).toBe(1);
    expect(await s.req('GET', '/readyz', undefined, false)).toMatchObject({
      status: 200,
      body: { status: 'ready' },
    });
  });

  it('serves a grant from a manual entitlement of the same product when the bundle-managed one is refused for the clock', async () => {
    const s = await setUp();
    const other = await s.req('POST', '/v1/entitlements', {
      tenant_id: 'acme',
      product_id: 'cad',
      policy_json: { type: 'concurrent', max_seats: 1 },
      starts_at: '2024-01-01T00:00:00Z',
      ends_at: '2031-01-01T00:00:00Z',
    });
    expect(other.status).toBe(201);
    expect((await s.lease(BUNDLE, 'u1')).status).toBe(201);
    step(-2 * HOUR);
    const r = await s.lease(BUNDLE, 'u2');
    expect(r.status, r.text).toBe(201);
    expect(leasesOf(other.body.entitlement_id, 'u2')).toBe(1);
    // Its one seat taken, the answer names the clock (the reason the vendor's entitlement did not serve), and it is no denial.
    const refused = await s.lease(BUNDLE, 'u3');
    expect(refused.body.error.code).toBe('clock_suspect');
    expect(
      (
        w.h.store.db
          .prepare("SELECT count(*) AS n FROM lease_events WHERE kind = 'deny'")
          .get() as { n: number }
      ).n,
    ).toBe(0);
    expect(kinds()).toEqual(['suspect']);
  });

  it('records an episode once under a burst of concurrent grants in one group commit', async () => {
    const s = await setUp();
    expect((await s.lease(BUNDLE, 'u1')).status).toBe(201);
    step(-3 * HOUR);
    const all = await Promise.all(
      Array.from({ length: 20 }, (_, i) => s.lease(i % 2 ? BUNDLE : MANUAL, `b${i}`)),
    );
    expect(all.filter((r) => r.status === 503)).toHaveLength(10);
    expect(all.filter((r) => r.status === 201)).toHaveLength(10);
    expect(all.some((r) => r.status === 500)).toBe(false);
    expect(kinds()).toEqual(['suspect']);
    expect(auditCount('clock.suspect')).toBe(1);
  });

  it('records the episode even when its batch is rolled back and run again', async () => {
    const s = await setUp();
    expect((await s.lease(BUNDLE, 'u1')).status).toBe(201);
    step(-2 * HOUR);
    // In one group commit: a refused lease (the episode starts: event and audit row), and a piece
    // that fails after writing, which makes the batch roll back and run again piece by piece.
    const [refused, broken] = await Promise.allSettled([
      s.services.leases.grant({
        productId: 'cad',
        tenantId: 'acme',
        subjectType: 'user',
        subjectId: 'u2',
      }),
      s.store.batch(() => {
        s.store.state.set('scratch', 'x');
        throw new Error('boom');
      }),
    ]);
    expect(refused.status === 'rejected' && refused.reason.code).toBe('clock_suspect');
    expect(broken.status).toBe('rejected');
    expect(s.store.state.get('scratch')).toBeUndefined();
    expect(kinds()).toEqual(['suspect']);
    expect(auditCount('clock.suspect')).toBe(1);
  });

  it('tolerates a clock up to an hour behind', async () => {
    const s = await setUp();
    await s.lease(BUNDLE, 'u1');
    step(-59 * 60_000);
    expect((await s.lease(BUNDLE, 'u2')).status).toBe(201);
    expect(kinds()).toEqual([]);
  });

  it('catches a step back with no traffic through the monotonic clock, from the persisted mark; the sweep tick writes it once and the fix closes it', async () => {
    const s = await setUp();
    await s.lease(BUNDLE, 'u1');
    pass(3 * HOUR + 0.5);
    step(-2.5 * HOUR);
    expect(s.services.timeGuard.status()).toMatchObject({
      suspect: true,
      highWaterMark: Date.parse('2025-06-01T15:00:00Z'),
    });
    s.services.timeGuard.tick();
    s.services.timeGuard.tick();
    expect(kinds()).toEqual(['suspect']);
    expect(w.h.store.state.clockEvents(0)[0]!.hwm).toBe(Date.parse('2025-06-01T15:00:00.000Z'));
    step(2.5 * HOUR);
    s.services.timeGuard.tick();
    s.services.timeGuard.tick();
    expect(kinds()).toEqual(['suspect', 'recovered']);
    expect(auditCount('clock.suspect')).toBe(1);
    expect(auditCount('clock.recovered')).toBe(1);
  });

  it('ends an episode when time catches up with the frozen mark', async () => {
    const s = await setUp();
    await s.lease(BUNDLE, 'u1');
    step(-2 * HOUR);
    expect((await s.lease(BUNDLE, 'u2')).status).toBe(503);
    pass(HOUR - 60_000);
    expect((await s.lease(BUNDLE, 'u2')).status).toBe(503);
    pass(60_000);
    expect((await s.lease(BUNDLE, 'u2')).status).toBe(201);
    expect(kinds()).toEqual(['suspect', 'recovered']);
    // From there the mark moves on from the clock's own reading: no flapping at the edge.
    pass(5 * 60_000);
    s.services.timeGuard.tick();
    expect((await s.lease(BUNDLE, 'u3')).status).toBe(201);
    expect(kinds()).toEqual(['suspect', 'recovered']);
  });
});

describe('a fast clock corrected by NTP (issue 11.2)', () => {
  it('is not suspect when the server booted 62 min fast and granted nothing before the correction', async () => {
    const s = await setUp();
    await s.lease(BUNDLE, 'u1');
    // Down overnight; it boots with the clock 62 minutes fast.
    pass(12 * HOUR);
    step(62 * 60_000);
    const fast = restart(s);
    pass(5 * 60_000);
    step(-62 * 60_000);
    fast.services.timeGuard.tick();
    expect(fast.services.timeGuard.status().suspect).toBe(false);
    expect((await fast.lease(BUNDLE, 'u2')).status).toBe(201);
    pass(2 * HOUR);
    expect((await fast.lease(BUNDLE, 'u3')).status).toBe(201);
    expect(kinds()).toEqual([]);
  });

  it('is not suspect on a fresh database whose first boot was fast', async () => {
    w = createWorld();
    mono = 0.001;
    step(3 * DAY);
    const s = boot();
    s.services.timeGuard.tick();
    pass(10 * 60_000);
    step(-3 * DAY);
    expect(s.services.timeGuard.status().suspect).toBe(false);
    await s.services.sync.importFile(
      w.sign(1, { entitlements: [ent('ent_bundle')] }, { iatMs: w.h.clock.now() - 60_000 }),
      { actor: 'test' },
    );
    expect((await s.lease(BUNDLE, 'u1')).status).toBe(201);
    expect(kinds()).toEqual([]);
  });

  it('after serving 3 days fast: manual entitlements serve at once, bundle-managed ones until time catches up, across a restart', async () => {
    const s = await setUp();
    step(3 * DAY);
    expect((await s.lease(BUNDLE, 'u1')).status).toBe(201);
    expect((await s.lease(MANUAL, 'u1')).status).toBe(201);
    pass(2 * 60_000);
    step(-3 * DAY);
    expect((await s.lease(MANUAL, 'u2')).status).toBe(201);
    expect((await s.lease(BUNDLE, 'u2')).body.error.code).toBe('clock_suspect');
    pass(DAY);
    const again = restart(s);
    expect((await again.lease(MANUAL, 'u3')).status).toBe(201);
    expect((await again.lease(BUNDLE, 'u3')).status).toBe(503);
    pass(2 * DAY - HOUR + 3 * 60_000);
    expect((await again.lease(BUNDLE, 'u3')).status).toBe(201);
    expect(kinds()).toEqual(['suspect', 'recovered']);
  });

  it('a newer vendor bundle vouches for the time: its signed iat replaces the mark and the episode closes once', async () => {
    const s = await setUp();
    step(3 * DAY);
    expect((await s.lease(BUNDLE, 'u1')).status).toBe(201);
    step(-3 * DAY);
    expect((await s.lease(BUNDLE, 'u2')).status).toBe(503);
    const iat = w.h.clock.now() - 10 * 60_000;
    await s.services.sync.importFile(
      w.sign(2, { entitlements: [ent('ent_bundle')] }, { iatMs: iat }),
      { actor: 'test' },
    );
    const events = w.h.store.state.clockEvents(0);
    expect(events.map((e) => e.kind)).toEqual(['suspect', 'vouched', 'recovered']);
    expect(events[1]!.hwm).toBe(iat);
    expect(events[2]!.details).toMatchObject({ ended_by: 'vouch', suspect_event: events[0]!.seq });
    expect(auditCount('clock.recovered')).toBe(1);
    expect((await s.lease(BUNDLE, 'u2')).status).toBe(201);
    // A restart afterwards changes nothing.
    const again = restart(s);
    expect((await again.lease(BUNDLE, 'u3')).status).toBe(201);
    expect(kinds()).toEqual(['suspect', 'vouched', 'recovered']);
  });

  it('a vouch made by another process (the CLI importing a bundle) is adopted without a restart', async () => {
    const s = await setUp();
    await s.lease(BUNDLE, 'u1');
    step(-3 * HOUR);
    expect((await s.lease(BUNDLE, 'u2')).body.error.code).toBe('clock_suspect');
    const other = w.h.openOtherStore();
    try {
      const g = createTimeGuard({ store: other, clock: w.h.clock });
      other.tx(() => g.vouch(w.h.clock.now() - 60_000));
    } finally {
      other.close();
    }
    expect((await s.lease(BUNDLE, 'u2')).status).toBe(201);
    expect(kinds()).toEqual(['suspect', 'vouched', 'recovered']);
    expect(auditCount('clock.suspect')).toBe(1);
    expect(auditCount('clock.recovered')).toBe(1);
  });

  it('a vouch whose import transaction rolls back leaves the episode open and the mark where it was', async () => {
    const s = await setUp();
    step(3 * DAY);
    expect((await s.lease(BUNDLE, 'u1')).status).toBe(201);
    step(-3 * DAY);
    expect((await s.lease(BUNDLE, 'u2')).status).toBe(503);
    const before = s.services.timeGuard.status();
    expect(() =>
      s.store.tx(() => {
        s.services.timeGuard.vouch(w.h.clock.now() - 60_000);
        throw new Error('the import failed after the vouch');
      }),
    ).toThrow('the import failed');
    expect(s.services.timeGuard.status()).toEqual(before);
    expect((await s.lease(BUNDLE, 'u2')).status).toBe(503);
    expect(kinds()).toEqual(['suspect']);
  });

  it('a vouch while the clock is behind but no request has seen it yet records the episode, then closes it', async () => {
    const s = await setUp();
    step(3 * DAY);
    expect((await s.lease(BUNDLE, 'u1')).status).toBe(201);
    step(-3 * DAY);
    await s.services.sync.importFile(
      w.sign(2, { entitlements: [ent('ent_bundle')] }, { iatMs: w.h.clock.now() - 60_000 }),
      { actor: 'test' },
    );
    expect(kinds()).toEqual(['suspect', 'vouched', 'recovered']);
    expect(auditCount('clock.suspect')).toBe(1);
    expect(auditCount('clock.recovered')).toBe(1);
    expect((await s.lease(BUNDLE, 'u2')).status).toBe(201);
  });

  it('a bundle whose iat is older than the mark does not lower it while the clock is fine', async () => {
    const s = await setUp();
    await s.lease(BUNDLE, 'u1');
    await s.services.sync.importFile(
      w.sign(2, { entitlements: [ent('ent_bundle')] }, { iatMs: w.h.clock.now() - DAY }),
      { actor: 'test' },
    );
    step(-2 * HOUR);
    expect((await s.lease(BUNDLE, 'u2')).status).toBe(503);
    expect(kinds()).toEqual(['suspect']);
  });
});

describe('restarts in and out of an episode', () => {
  it('a restart inside an episode keeps it open without recording it again; a restart after the fix closes it once', async () => {
    const s = await setUp();
    await s.lease(BUNDLE, 'u1');
    pass(30 * 60_000);
    step(-2 * HOUR);
    expect((await s.lease(BUNDLE, 'u2')).status).toBe(503);
    const frozen = w.h.store.state.clockEvents(0)[0]!.hwm;
    pass(10 * 60_000);
    let r = restart(s, 99.5);
    expect(r.services.timeGuard.status()).toMatchObject({
      suspect: true,
      highWaterMark: frozen,
    });
    expect((await r.lease(BUNDLE, 'u2')).status).toBe(503);
    expect((await r.lease(MANUAL, 'u2')).status).toBe(201);
    r = restart(r, 3.3);
    expect((await r.lease(BUNDLE, 'u2')).status).toBe(503);
    expect(kinds()).toEqual(['suspect']);
    expect(auditCount('clock.suspect')).toBe(1);

    // Fixed while the server was down: the start closes it, before any request.
    step(2 * HOUR);
    r = restart(r, 0.1);
    expect(kinds()).toEqual(['suspect', 'recovered']);
    r = restart(r, 0.2);
    expect((await r.lease(BUNDLE, 'u2')).status).toBe(201);
    expect(kinds()).toEqual(['suspect', 'recovered']);
    expect(auditCount('clock.recovered')).toBe(1);
  });

  it('a clock set back while the server was down opens an episode at start, once', async () => {
    const s = await setUp();
    await s.lease(BUNDLE, 'u1');
    pass(2 * 60_000);
    step(-5 * HOUR);
    let r = restart(s);
    r = restart(r);
    expect(kinds()).toEqual(['suspect']);
    expect((await r.lease(BUNDLE, 'u2')).status).toBe(503);
    expect(auditCount('clock.suspect')).toBe(1);
  });
});

describe('reporting', () => {
  it('readyz stays ready (saying the clock is suspect) when no bundle-managed entitlement is there to refuse', async () => {
    w = createWorld();
    mono = 0;
    const s = boot();
    const m = await s.req('POST', '/v1/entitlements', {
      ...MANUAL,
      subject_type: undefined,
      policy_json: { type: 'concurrent', max_seats: 5 },
      starts_at: '2024-01-01T00:00:00Z',
      ends_at: '2030-01-01T00:00:00Z',
    });
    expect(m.status).toBe(201);
    expect((await s.lease(MANUAL, 'u1')).status).toBe(201);
    step(-2 * HOUR);
    expect((await s.lease(MANUAL, 'u2')).status).toBe(201);
    expect(await s.req('GET', '/readyz', undefined, false)).toMatchObject({
      status: 200,
      body: { status: 'ready', clock: 'suspect' },
    });
    expect(kinds()).toEqual(['suspect']);
  });

  it('the next export carries the episode once (clock events and audit rows), the one after it nothing again', async () => {
    const s = await setUp();
    await s.lease(BUNDLE, 'u1');
    const out = join(w.h.dir, 'outbox');
    s.services.sync.exportTo({ outDir: out, actor: 'test' });
    step(-2 * HOUR);
    await s.lease(BUNDLE, 'u2');
    await s.lease(BUNDLE, 'u3');
    step(2 * HOUR);
    await s.lease(BUNDLE, 'u4');
    const second = s.services.sync.exportTo({ outDir: out, actor: 'test' });
    const recs = records(second.file);
    expect(recs.filter((x) => x.op === 'clock_event').map((x) => [x.kind, typeof x.seq])).toEqual([
      ['suspect', 'number'],
      ['recovered', 'number'],
    ]);
    expect(
      recs
        .filter((x) => x.op === 'audit' && String(x.action).startsWith('clock.'))
        .map((x) => x.action),
    ).toEqual(['clock.suspect', 'clock.recovered']);
    await s.lease(BUNDLE, 'u5');
    const third = s.services.sync.exportTo({ outDir: out, actor: 'test' });
    expect(
      records(third.file).filter(
        (x) =>
          x.op === 'clock_event' || (x.op === 'audit' && String(x.action).startsWith('clock.')),
      ),
    ).toEqual([]);
  });
});

describe('the guard on its own', () => {
  it('never stores a fractional mark, whatever the monotonic clock says', async () => {
    const s = await setUp();
    await s.lease(BUNDLE, 'u1');
    pass(PERSIST_SAFE + 0.999);
    await s.lease(MANUAL, 'u1');
    const stored = s.store.state.get('time_hwm')!;
    expect(stored).toMatch(/^\d+$/);
    expect(CLOCK_TOLERANCE_MS).toBe(HOUR);
  });
});
const PERSIST_SAFE = 61_000;

function records(file: string): Array<Record<string, unknown>> {
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  return lines
    .slice(2)
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
