// Subjects and grace across the bundle paths: export records count a subject once however it was
// spelt (issue 11.3), and a vendor bundle that ends a term early lets nobody new in (issue 11.4).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createWorld, ent, type World } from './world.ts';

let w: World;
afterEach(() => w?.h.close());

const DAY = 86_400_000;
const lease = (subject: string) =>
  w.h.req(
    'POST',
    '/v1/license/lease',
    { tenant_id: 'acme', product_id: 'cad', subject_type: 'user', subject_id: subject },
    null,
  );
const perUser = (over: Record<string, unknown> = {}) =>
  ent('ent_b', { policy_json: { type: 'per_user', max_seats: 5, grace_days: 30 }, ...over });

function records(file: string): Array<Record<string, any>> {
  const text = readFileSync(file, 'utf8');
  const payload = text.slice(text.indexOf('\n', 9) + 1);
  return payload
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l));
}

describe('export records', () => {
  it('carry one seat and one unique subject for alice, Alice and ALICE, shown as first seen', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [perUser()] }));
    for (const id of ['Alice', 'alice', 'ALICE', 'jose\u0301', 'jos\u00e9'])
      expect((await lease(id)).status).toBe(201);
    const r = w.h.services.sync.exportTo({ outDir: join(w.h.dir, 'outbox'), actor: 'test' });
    const recs = records(r.file);
    expect(recs.filter((x) => x.op === 'seat').map((x) => x.subject_id)).toEqual([
      'Alice',
      'jose\u0301',
    ]);
    expect(recs.find((x) => x.op === 'usage' && x.entitlement_id === 'ent_b')).toMatchObject({
      grants: 2,
      unique_subjects: 2,
    });
  });
});

describe('a bundle that ends the term early', () => {
  it('leaves holders from before the new end in grace and refuses everybody else, seats included', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [perUser()] }));
    expect((await lease('alice')).status).toBe(201);
    w.h.clock.advance(2 * DAY);
    expect((await lease('bob')).status).toBe(201);
    // The vendor ends the contract on 2025-06-02: alice's seat predates it, bob's does not.
    await w.importFile(
      w.sign(2, { entitlements: [perUser({ ends_at: '2025-06-02T00:00:00Z', rev: 2 })] }),
    );
    w.h.clock.advance(DAY);

    const a = await lease('Alice');
    expect(a.status, JSON.stringify(a.body)).toBe(201);
    expect(a.body.grace).toBe(true);
    const b = await lease('bob');
    expect(b.status).toBe(403);
    expect(b.body.error).toMatchObject({
      code: 'entitlement_inactive',
      details: { reason: 'expired', status: 'grace' },
    });
    const before = w.h.snapshot();
    const seat = await w.h.req('POST', '/v1/entitlements/ent_b/seats', { principal_id: 'carol' });
    expect(seat.status).toBe(403);
    expect(seat.body.error).toMatchObject({
      code: 'entitlement_inactive',
      details: { reason: 'expired', status: 'grace' },
    });
    expect(w.h.snapshot()).toEqual(before);
  });
});
