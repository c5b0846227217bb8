// The quota service on a real store: units used and returned exactly, idempotent installs, the
// lifecycle (no new installation from the end of term on, existing ones readable), a lowered
// limit keeping every installation, and the field limits.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, seedEntitlement, type Harness } from '../../test/helpers.ts';
import { AppError } from '../errors.ts';
import { METADATA_MAX_BYTES } from './quota-rules.ts';

let h: Harness;
beforeEach(() => {
  h = createHarness();
});
afterEach(() => h.close());

const DAY = 86_400_000;
const rows = (entitlementId: string) =>
  h.store.db
    .prepare(
      'SELECT id, quota, name, version FROM installations WHERE entitlement_id = ? ORDER BY seq',
    )
    .all(entitlementId) as Array<{
    id: string;
    quota: string;
    name: string;
    version: string | null;
  }>;
const audit = (action: string) => h.store.audit.page(0, 1000).filter((r) => r.action === action);

/** A new entitlement with these quotas (through the API, so the policy schema checks them). */
async function entitlement(quotas: Record<string, number> = { dashboards: 2 }, extra = {}) {
  const r = await h.req('POST', '/v1/entitlements', {
    ...seedEntitlement,
    policy_json: { ...seedEntitlement.policy_json, quotas },
    ...extra,
  });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.entitlement_id as string;
}
const q = () => h.services.quotas;
const install = (id: string, name: string, more: Record<string, unknown> = {}) =>
  q().install(id, { quota: 'dashboards', name, ...more }, 'cli');
function refusal(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('quotas: units used and returned', () => {
  it('installs up to the limit, refuses the next with quota_exhausted, and a removal frees a unit', async () => {
    const id = await entitlement({ dashboards: 2, reports: 1 });
    const a = install(id, 'Sales', {
      metadata: { b: 1, a: [1, 2] },
      version: '1.2.0',
      principalId: 'alice',
    });
    expect(a.created).toBe(true);
    expect(a.installation).toMatchObject({
      entitlementId: id,
      quota: 'dashboards',
      name: 'Sales',
      metadata: { a: [1, 2], b: 1 },
      version: '1.2.0',
      principalId: 'alice',
      idempotencyKey: null,
      createdAt: h.clock.now(),
      updatedAt: h.clock.now(),
    });
    expect(a.installation.id).toMatch(/^inst_[A-Za-z0-9_-]{22}$/);
    // Exactly the interface's fields, from every read (no store bookkeeping such as seq).
    const fields = Object.keys(a.installation).sort();
    expect(Object.keys(q().get(a.installation.id)).sort()).toEqual(fields);
    expect(Object.keys(q().list({ entitlementId: id }, undefined).items[0]!).sort()).toEqual(
      fields,
    );
    install(id, 'Ops');
    const err = refusal(() => install(id, 'Third'));
    expect(err.code).toBe('quota_exhausted');
    expect(err.status).toBe(409);
    expect(err.details).toMatchObject({
      entitlement_id: id,
      quota: 'dashboards',
      limit: 2,
      used: 2,
    });
    expect(rows(id).map((r) => r.name)).toEqual(['Sales', 'Ops']);
    // Another quota of the same entitlement counts apart.
    q().install(id, { quota: 'reports', name: 'Weekly' }, 'cli');
    expect(q().states(h.store.entitlements.get(id)!)).toEqual([
      { quota: 'dashboards', limit: 2, used: 2, remaining: 0 },
      { quota: 'reports', limit: 1, used: 1, remaining: 0 },
    ]);

    const removed = q().remove(id, a.installation.id, 'cli');
    expect(removed.id).toBe(a.installation.id);
    expect(rows(id).map((r) => r.name)).toEqual(['Ops', 'Weekly']);
    expect(install(id, 'Third').created).toBe(true);
    expect(audit('installation.add')).toHaveLength(4);
    expect(audit('installation.remove').map((r) => JSON.parse(r.details))).toEqual([
      { installation_id: a.installation.id, name: 'Sales', quota: 'dashboards' },
    ]);
  });

  it('refuses a quota the policy does not name, and an entitlement or installation that does not exist', async () => {
    const id = await entitlement({ dashboards: 1 });
    const err = refusal(() => q().install(id, { quota: 'widgets', name: 'x' }, 'cli'));
    expect(err.code).toBe('invalid_request');
    expect(err.message).toBe(`${id} has no quota widgets (its quotas: dashboards)`);
    expect(err.details.issues).toEqual([{ path: 'quota', message: `${id} has no quota widgets` }]);
    expect(refusal(() => install('ent_nope', 'x')).code).toBe('not_found');
    expect(refusal(() => q().get('inst_nope')).code).toBe('not_found');
    expect(refusal(() => q().remove(id, 'inst_nope', 'cli')).code).toBe('not_found');
    const other = await entitlement({ dashboards: 1 });
    const i = install(other, 'x').installation;
    // An installation is removed through its own entitlement only.
    expect(refusal(() => q().remove(id, i.id, 'cli')).code).toBe('not_found');
    expect(rows(other)).toHaveLength(1);
    expect(rows(id)).toEqual([]);

    const plain = (await h.req('POST', '/v1/entitlements', seedEntitlement)).body
      .entitlement_id as string;
    expect(refusal(() => install(plain, 'x')).message).toBe(
      `${plain} has no quota dashboards; its policy_json has no quotas`,
    );
    expect(q().states(h.store.entitlements.get(plain)!)).toEqual([]);
  });

  it('does not take a quota named after an Object.prototype property for one the policy has', async () => {
    const id = await entitlement({ dashboards: 1 });
    for (const quota of ['constructor', '__proto__'])
      expect(refusal(() => q().install(id, { quota, name: 'x' }, 'cli')).code).toBe(
        'invalid_request',
      );
    const odd = await entitlement({ constructor: 1 });
    expect(q().install(odd, { quota: 'constructor', name: 'x' }, 'cli').created).toBe(true);
    expect(q().states(h.store.entitlements.get(odd)!)).toEqual([
      { quota: 'constructor', limit: 1, used: 1, remaining: 0 },
    ]);
  });
});

describe('quotas: idempotency keys', () => {
  it('answers a retried install with the first installation, and refuses the key with another body', async () => {
    const id = await entitlement({ dashboards: 2 });
    const body = { idempotencyKey: 'k-1', metadata: { x: 1, y: { z: 2 } }, version: '1.0' };
    const first = install(id, 'Sales', body);
    // The same metadata in another key order is the same body.
    const again = install(id, 'Sales', { ...body, metadata: { y: { z: 2 }, x: 1 } });
    expect(again).toEqual({ installation: first.installation, created: false });
    expect(rows(id)).toHaveLength(1);
    const err = refusal(() => install(id, 'Other', body));
    expect(err.code).toBe('conflict');
    expect(err.details).toEqual({ installation_id: first.installation.id, idempotency_key: 'k-1' });
    // Keys are per entitlement.
    const other = await entitlement({ dashboards: 1 });
    expect(install(other, 'Sales', body).created).toBe(true);
    // A full quota still answers the retry.
    install(id, 'Ops');
    expect(install(id, 'Sales', body).created).toBe(false);
    expect(audit('installation.add')).toHaveLength(3);
    // Once removed, the key makes a new installation.
    q().remove(id, first.installation.id, 'cli');
    const next = install(id, 'Sales', body);
    expect(next.created).toBe(true);
    expect(next.installation.id).not.toBe(first.installation.id);
  });
});

describe('quotas: a lowered limit', () => {
  it('keeps every installation, shows 0 remaining (never negative) and refuses new ones until under the limit', async () => {
    const id = await entitlement({ dashboards: 3 });
    const made = ['a', 'b', 'c'].map((n) => install(id, n).installation);
    const put = await h.req('PUT', `/v1/entitlements/${id}`, {
      policy_json: { ...seedEntitlement.policy_json, quotas: { dashboards: 1 } },
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    expect(rows(id)).toHaveLength(3);
    const e = () => h.store.entitlements.get(id)!;
    expect(q().states(e())).toEqual([{ quota: 'dashboards', limit: 1, used: 3, remaining: 0 }]);
    expect(refusal(() => install(id, 'd')).code).toBe('quota_exhausted');
    q().remove(id, made[0]!.id, 'cli');
    expect(refusal(() => install(id, 'd')).code).toBe('quota_exhausted');
    q().remove(id, made[1]!.id, 'cli');
    expect(refusal(() => install(id, 'd')).code).toBe('quota_exhausted');
    q().remove(id, made[2]!.id, 'cli');
    expect(install(id, 'd').created).toBe(true);
    expect(q().states(e())).toEqual([{ quota: 'dashboards', limit: 1, used: 1, remaining: 0 }]);
  });
});

describe('quotas: the lifecycle', () => {
  it('in grace refuses new installations and version changes, while reading, listing and removing work', async () => {
    const id = await entitlement({ dashboards: 3 });
    const a = install(id, 'Sales', { idempotencyKey: 'k' }).installation;
    const b = install(id, 'Ops').installation;
    h.clock.set('2025-01-10T00:00:00Z');
    const err = refusal(() => install(id, 'New'));
    expect(err.code).toBe('entitlement_inactive');
    expect(err.details).toEqual({
      reason: 'expired',
      status: 'grace',
      entitlement_id: id,
      grace_ends_at: '2025-01-30T23:59:59.000Z',
    });
    expect(err.message).toContain('existing installations stay readable');
    expect(refusal(() => q().setVersion(a.id, '2.0', 'cli')).code).toBe('entitlement_inactive');
    // A retry of an install made before the end still answers it.
    expect(install(id, 'Sales', { idempotencyKey: 'k' }).created).toBe(false);
    expect(q().get(a.id).name).toBe('Sales');
    expect(
      q()
        .list({ entitlementId: id }, undefined)
        .items.map((i) => i.id),
    ).toEqual([a.id, b.id]);
    q().remove(id, b.id, 'cli');
    expect(rows(id).map((r) => r.id)).toEqual([a.id]);

    h.clock.set('2025-02-01T00:00:00Z');
    const after = refusal(() => install(id, 'New'));
    expect(after.code).toBe('entitlement_inactive');
    expect(after.details).toMatchObject({ reason: 'expired' });
    expect(q().get(a.id).version).toBeNull();
    expect(q().list({ entitlementId: id }, undefined).items).toHaveLength(1);
    expect(rows(id)).toHaveLength(1);
  });

  it.each(['suspend', 'revoke'] as const)(
    'refuses new installations when %sd, keeps the existing ones',
    async (action) => {
      const id = await entitlement({ dashboards: 3 });
      install(id, 'Sales');
      h.services.entitlements[action](id, 'cli');
      const err = refusal(() => install(id, 'New'));
      expect(err.code).toBe('entitlement_inactive');
      expect(err.details.reason).toBe(`${action}${action === 'suspend' ? 'ed' : 'd'}`);
      expect(rows(id)).toHaveLength(1);
    },
  );

  it('refuses new installations before the term starts', async () => {
    const id = await entitlement({ dashboards: 3 }, { starts_at: '2024-06-01T00:00:00Z' });
    expect(refusal(() => install(id, 'New')).details.reason).toBe('pending');
    h.clock.advance(200 * DAY);
    expect(install(id, 'New').created).toBe(true);
  });
});

describe('quotas: versions and lists', () => {
  it('records a version change with its audit row', async () => {
    const id = await entitlement({ dashboards: 3 });
    const a = install(id, 'Sales', { version: '1.0' }).installation;
    h.clock.advance(1000);
    const b = q().setVersion(a.id, '1.1', 'token:tok_x');
    expect(b).toMatchObject({
      version: '1.1',
      updatedAt: a.createdAt + 1000,
      createdAt: a.createdAt,
    });
    expect(rows(id)[0]!.version).toBe('1.1');
    expect(JSON.parse(audit('installation.version')[0]!.details)).toEqual({
      installation_id: a.id,
      from: '1.0',
      to: '1.1',
    });
    expect(refusal(() => q().setVersion(a.id, 'bad version', 'cli')).code).toBe('invalid_request');
    expect(refusal(() => q().setVersion('inst_nope', '1', 'cli')).code).toBe('not_found');
  });

  it('lists by entitlement, tenant and quota, in pages', async () => {
    const a = await entitlement({ dashboards: 5, reports: 5 });
    const b = await entitlement({ dashboards: 5 }, { tenant_id: 'other' });
    for (const n of ['1', '2', '3']) install(a, `a${n}`);
    q().install(a, { quota: 'reports', name: 'r1' }, 'cli');
    install(b, 'b1');
    const names = (p: { items: Array<{ name: string }> }) => p.items.map((i) => i.name);
    expect(names(q().list({}, undefined))).toEqual(['a1', 'a2', 'a3', 'r1', 'b1']);
    expect(names(q().list({ tenant: 'other' }, undefined))).toEqual(['b1']);
    expect(names(q().list({ entitlementId: a, quota: 'reports' }, undefined))).toEqual(['r1']);
    const p1 = q().list({ entitlementId: a }, undefined, 2);
    expect(names(p1)).toEqual(['a1', 'a2']);
    const p2 = q().list({ entitlementId: a }, p1.nextCursor!, 2);
    expect(names(p2)).toEqual(['a3', 'r1']);
    expect(p2.nextCursor).toBeNull();
    expect(refusal(() => q().list({}, 'bogus')).code).toBe('invalid_request');
  });
});

describe('quotas: field limits', () => {
  it.each([
    [{ name: '' }, 'name'],
    [{ name: undefined }, 'name'],
    [{ name: 'a\u0000b' }, 'name'],
    [{ name: '   ' }, 'name'],
    [{ name: 'x'.repeat(201) }, 'name'],
    [{ metadata: [1] }, 'metadata'],
    [{ metadata: 'text' }, 'metadata'],
    [{ metadata: { big: 'x'.repeat(METADATA_MAX_BYTES) } }, 'metadata'],
    [{ version: '1 2' }, 'version'],
    [{ version: 3 }, 'version'],
    [{ principalId: '' }, 'principal_id'],
    [{ idempotencyKey: 'k\n' }, 'idempotency_key'],
    [{ quota: 'Dash Boards' }, 'quota'],
  ])('refuses %j (details.issues names %s) and changes nothing', async (bad, path) => {
    const id = await entitlement({ dashboards: 3 });
    const before = h.snapshot();
    const err = refusal(() =>
      q().install(id, { quota: 'dashboards', name: 'ok', ...bad } as never, 'cli'),
    );
    expect(err.code).toBe('invalid_request');
    expect((err.details.issues as Array<{ path: string }>).map((i) => i.path)).toEqual([path]);
    expect(h.snapshot()).toEqual(before);
  });

  it('takes metadata of exactly the limit', async () => {
    const id = await entitlement({ dashboards: 3 });
    // {"m":"…"} is 8 bytes around the string.
    const metadata = { m: 'x'.repeat(METADATA_MAX_BYTES - 8) };
    expect(install(id, 'ok', { metadata }).installation.metadata).toEqual(metadata);
  });
});
