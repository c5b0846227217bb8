// No answer is a 500 after a committed change (issue 11.5): what could fail after the commit
// (signing the lease token) is refused before it. A token lives whole seconds and must end at
// least one second after it is issued, so a lease in the last second of a term is a refusal.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../helpers.ts';

let h: Harness;
beforeEach(() => {
  h = createHarness({ now: '2024-01-15T10:30:00.300Z' });
});
afterEach(() => h.close());

const lease = (body: Record<string, unknown>) => h.req('POST', '/v1/license/lease', body, null);
const count = (sql: string, ...args: unknown[]) =>
  h.store.db
    .prepare(sql)
    .pluck()
    .get(...args) as number;

async function entitlement(policy: Record<string, unknown>, endsAt: string): Promise<string> {
  const r = await h.req('POST', '/v1/entitlements', {
    tenant_id: 'acme',
    product_id: 'cad',
    policy_json: policy,
    starts_at: '2024-01-01T00:00:00Z',
    ends_at: endsAt,
  });
  expect(r.status, r.text).toBe(201);
  return r.body.entitlement_id as string;
}

describe('a lease that would end within the second it is issued', () => {
  it.each([
    ['per_user (takes a named seat)', { type: 'per_user', max_seats: 3, grace_days: 0 }, 'user'],
    ['concurrent', { type: 'concurrent', max_seats: 3, grace_days: 0 }, 'machine'],
  ])(
    '%s: refused with entitlement_inactive, no lease, no seat, never a 500',
    async (_name, policy, subjectType) => {
      const id = await entitlement(policy, '2024-01-15T10:30:00.700Z');
      for (const who of ['alice', 'bob', 'carol', 'dave']) {
        const r = await lease({
          tenant_id: 'acme',
          product_id: 'cad',
          subject_type: subjectType,
          subject_id: who,
        });
        expect(r.status, r.text).toBe(403);
        expect(r.body.error.code).toBe('entitlement_inactive');
        expect(r.body.error.message).toContain('less than a second from now');
      }
      expect(count('SELECT count(*) FROM leases WHERE entitlement_id = ?', id)).toBe(0);
      expect(count('SELECT count(*) FROM seats WHERE entitlement_id = ?', id)).toBe(0);
    },
  );

  it('a renewal in the last second is refused and leaves the lease as it was', async () => {
    const id = await entitlement(
      { type: 'concurrent', max_seats: 1, grace_days: 0 },
      '2024-01-15T11:00:00.500Z',
    );
    const g = await lease({
      tenant_id: 'acme',
      product_id: 'cad',
      subject_type: 'user',
      subject_id: 'alice',
    });
    expect(g.status, g.text).toBe(201);
    const leaseId = g.body.lease_id as string;
    const before = h.store.db.prepare('SELECT * FROM leases WHERE id = ?').get(leaseId);
    h.clock.set('2024-01-15T11:00:00.100Z');
    const r = await h.req('POST', '/v1/license/lease/renew', { lease_id: leaseId }, null);
    expect(r.status, r.text).toBe(403);
    expect(r.body.error.code).toBe('entitlement_inactive');
    expect(h.store.db.prepare('SELECT * FROM leases WHERE id = ?').get(leaseId)).toEqual(before);
    expect(
      count("SELECT count(*) FROM lease_events WHERE lease_id = ? AND kind = 'renew'", leaseId),
    ).toBe(0);
    expect(count('SELECT count(*) FROM leases WHERE entitlement_id = ?', id)).toBe(1);
  });

  it('one second and a bit before the end still gets a lease, ending at the end of the term', async () => {
    await entitlement(
      { type: 'concurrent', max_seats: 1, grace_days: 0 },
      '2024-01-15T10:30:01.400Z',
    );
    const r = await lease({
      tenant_id: 'acme',
      product_id: 'cad',
      subject_type: 'user',
      subject_id: 'alice',
    });
    expect(r.status, r.text).toBe(201);
    expect(r.body.expires_at).toMatch(/^2024-01-15T10:30:01/);
  });
});

describe('an export whose file cannot take its final name after the commit', () => {
  it('answers the committed export (with a warning and the file it is in), not an error, and the next export follows it', async () => {
    const { mkdirSync, readdirSync, statSync } = await import('node:fs');
    const { join } = await import('node:path');
    const out = join(h.dir, 'outbox');
    // A folder squatting on the export's final name: the rename after the commit fails (EISDIR).
    mkdirSync(join(out, `${h.info.server_id}-export-000001.bpsync`), { recursive: true });
    const r = h.services.sync.exportTo({ outDir: out, actor: 'test' });
    expect(r.seq).toBe(1);
    expect(r.warning).toMatch(
      /^export 1 is committed but could not be renamed from .*\.part to .*-export-000001\.bpsync \(EISDIR\); rename it by hand$/,
    );
    expect(statSync(r.file).size).toBe(r.bytes);
    expect(statSync(r.file).mode & 0o777).toBe(0o600);
    expect(count('SELECT count(*) FROM sync_exports')).toBe(1);
    const next = h.services.sync.exportTo({ outDir: join(h.dir, 'outbox-2'), actor: 'test' });
    expect(next.seq).toBe(2);
    expect(next.warning).toBeUndefined();
    expect(readdirSync(join(h.dir, 'outbox-2'))).toEqual([
      `${h.info.server_id}-export-000002.bpsync`,
    ]);
  });
});
