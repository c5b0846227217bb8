// "Revoked is final" and "one owner per entitlement" on both write paths, in both orders: the admin
// over HTTP and a signed bundle, on a real database (the rules themselves: entitlement-rules.ts).
import { afterEach, describe, expect, it } from 'vitest';
import { createWorld, ent, type World } from './world.ts';
import { seedEntitlement } from '../helpers.ts';
import { changeRefusal } from '../../src/domain/entitlement-rules.ts';

let w: World;
afterEach(() => w?.h.close());

/** Every way the admin could bring an entitlement back or change it, with the answers expected. */
const MANUAL_ATTEMPTS = [
  ['POST', 'resume', undefined],
  ['POST', 'suspend', undefined],
  ['POST', 'revoke', undefined],
  ['POST', 'renew', { period_months: 12 }],
  ['PATCH', '', { ends_at: '2031-01-01T00:00:00Z' }],
] as const;

async function manualAttempts(id: string) {
  const out: Array<{ status: number; code: string; message: string }> = [];
  for (const [method, action, body] of MANUAL_ATTEMPTS) {
    const path = `/v1/entitlements/${id}${action ? `/${action}` : ''}`;
    const r = await w.h.req(method, path, body);
    out.push({ status: r.status, code: r.body.error.code, message: r.body.error.message });
  }
  return out;
}

describe('revoked is final, whichever path revoked it', () => {
  it('a manual revoke, then a bundle that lists the id again: the bundle is refused whole, the admin too, and it stays revoked', async () => {
    w = createWorld();
    const id = (await w.h.req('POST', '/v1/entitlements', seedEntitlement)).body
      .entitlement_id as string;
    const revoked = await w.h.req('POST', `/v1/entitlements/${id}/revoke`);
    expect(revoked.status).toBe(200);
    expect(revoked.body.status).toBe('revoked');
    const stored = w.h.store.entitlements.get(id)!;
    expect(changeRefusal(stored, 'manual')).toBe('revoked_is_final');
    expect(changeRefusal(stored, 'bundle')).toBe('owned_by_customer');

    // The bundle: refused (422 bundle_rejected, malformed), nothing changed but the audit row.
    const err = await w.expectRefused(
      w.sign(1, { entitlements: [ent(id, { tenant_id: seedEntitlement.tenant_id })] }),
      'malformed',
      /is a manual entitlement on this server; a bundle may not take it over/,
    );
    expect(err.details).toMatchObject({ rule: 'malformed', record: 1, entitlement_id: id });

    // The admin: every attempt refused with conflict, nothing written.
    const before = w.h.snapshot();
    expect(await manualAttempts(id)).toEqual([
      { status: 409, code: 'conflict', message: `${id} is revoked; revocation is final` },
      { status: 409, code: 'conflict', message: `${id} is revoked; it cannot be suspended` },
      { status: 409, code: 'conflict', message: `${id} is revoked already` },
      { status: 409, code: 'conflict', message: `${id} is revoked; it cannot be renewed` },
      {
        status: 409,
        code: 'conflict',
        message: `${id} is revoked; a revoked entitlement cannot be changed`,
      },
    ]);
    expect(w.h.snapshot()).toEqual(before);
    expect(w.h.store.entitlements.get(id)).toEqual(stored);
    expect(w.h.store.sync.lastImport()).toBeUndefined();
  });

  it('a bundle revoke, then the admin and a later bundle list it again: the admin is refused, the bundle skips it, and it stays revoked', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_b'), ent('ent_keep')] }));
    const r2 = await w.importFile(
      w.sign(2, { entitlements: [ent('ent_keep')], revoked: ['ent_b'] }),
    );
    expect(r2).toMatchObject({ status: 'applied', revoked: 1, unchanged: 1 });
    const stored = w.h.store.entitlements.get('ent_b')!;
    expect(stored.status).toBe('revoked');
    expect(changeRefusal(stored, 'bundle', w.h.store.sync.isRevoked('ent_b'))).toBe(
      'revoked_is_final',
    );
    expect(changeRefusal(stored, 'manual')).toBe('owned_by_bundle');

    // The admin: every attempt refused with managed_by_bundle (409), nothing written.
    const before = w.h.snapshot();
    const refused = {
      status: 409,
      code: 'managed_by_bundle',
      message: 'ent_b is managed by vendor bundles; only a newer bundle can change it',
    };
    expect(await manualAttempts('ent_b')).toEqual(MANUAL_ATTEMPTS.map(() => refused));
    expect(w.h.snapshot()).toEqual(before);

    // A dry run of a bundle listing it again (a newer rev) shows it ignored and writes nothing.
    const again = w.sign(3, { entitlements: [ent('ent_b', { rev: 5 }), ent('ent_keep')] });
    const dry = await w.importFile(again, { dryRun: true });
    expect(dry).toMatchObject({ status: 'dry_run', ignored: 1, changed: 0, added: 0 });
    expect(dry.diff?.ignored).toEqual(['ent_b']);
    expect(w.h.snapshot()).toEqual(before);

    // Applied: the record is skipped (reported and audited as ignored), the row is untouched.
    const r3 = await w.importFile(again);
    expect(r3).toMatchObject({ status: 'applied', ignored: 1, changed: 0, unchanged: 1 });
    expect(w.h.store.entitlements.get('ent_b')).toEqual(stored);
    const audit = w.h.store.audit.head();
    expect(audit.seq).toBeGreaterThan(0);
    const last = w.h.store.audit.row(audit.seq)!;
    expect(last.action).toBe('sync.import');
    expect(JSON.parse(last.details)).toMatchObject({
      seq: 3,
      ignored: 1,
      ids: { ignored: ['ent_b'] },
    });
    const shown = await w.h.req('GET', '/v1/entitlements/ent_b');
    expect(shown.status).toBe(200);
    expect(shown.body.status).toBe('revoked');
  });
});
