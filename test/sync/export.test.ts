// Usage exports and the audit chain, in process; the vendor's check (verifyExport) reads the files.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createWorld, ent, type World } from './world.ts';
import { verifyExport } from '../../src/sync/vendor.ts';
import { AppError } from '../../src/errors.ts';
import { generateSigningKey } from '../../src/tokens/keys.ts';
import { dropTriggers } from '../helpers.ts';

let w: World;
afterEach(() => w?.h.close());

const lease = (subject: string, extra: Record<string, unknown> = {}) =>
  w.h.req(
    'POST',
    '/v1/license/lease',
    { tenant_id: 'acme', product_id: 'cad', subject_type: 'user', subject_id: subject, ...extra },
    null,
  );

async function refusedExport(
  file: string,
  key: string,
  message: RegExp,
  opts: { prev?: string } = {},
) {
  const err = await verifyExport(file, key, opts).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'verify-export accepted it').toBeInstanceOf(AppError);
  expect((err as AppError).code).toBe('bundle_rejected');
  expect((err as AppError).message).toMatch(message);
  return err as AppError;
}

function records(file: string): Array<Record<string, any>> {
  const text = readFileSync(file, 'utf8');
  const payload = text.slice(text.indexOf('\n', 9) + 1);
  return payload
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l));
}

describe('exports', () => {
  it('the first export enrols the server and carries usage, seats, manual entitlements, the audit log and its head', async () => {
    w = createWorld();
    await w.importFile(
      w.sign(1, {
        entitlements: [ent('ent_a', { policy_json: { type: 'concurrent', max_seats: 2 } })],
      }),
    );
    const manual = (
      await w.h.req('POST', '/v1/entitlements', {
        tenant_id: 'acme',
        product_id: 'cam',
        policy_json: { type: 'per_user', max_seats: 5 },
        starts_at: '2024-01-01T00:00:00Z',
        ends_at: '2030-01-01T00:00:00Z',
      })
    ).body.entitlement_id as string;
    const l1 = (await lease('u1', { entitlement_id: 'ent_a' })).body.lease_id;
    await lease('u2', { entitlement_id: 'ent_a' });
    expect((await lease('u3', { entitlement_id: 'ent_a' })).body.error.code).toBe(
      'seats_exhausted',
    );
    await w.h.req('POST', '/v1/license/lease/release', { lease_id: l1 }, null);
    await lease('u1', { entitlement_id: 'ent_a' });
    await w.h.req(
      'POST',
      '/v1/license/lease',
      { tenant_id: 'acme', product_id: 'cam', subject_type: 'user', subject_id: 'alice' },
      null,
    );

    const out = join(w.h.dir, 'outbox');
    const r = w.h.services.sync.exportTo({ outDir: out, actor: 'test' });
    expect(r).toMatchObject({
      seq: 1,
      file: join(out, `${w.h.info.server_id}-export-000001.bpsync`),
    });
    const summary = await verifyExport(r.file, w.h.info.public_key);
    expect(summary).toMatchObject({
      ok: true,
      server_id: w.h.info.server_id,
      seq: 1,
      prev: null,
      ack: 1,
      enrolment: true,
      records: r.records,
    });
    const recs = records(r.file);
    expect(recs[0]).toEqual({
      op: 'enrolment',
      server_id: w.h.info.server_id,
      public_key: w.h.info.public_key,
      kid: w.h.info.kid,
    });
    const usageA = recs.find((x) => x.op === 'usage' && x.entitlement_id === 'ent_a');
    expect(usageA).toMatchObject({
      peak_concurrent: 2,
      grants: 3,
      denials: 1,
      unique_subjects: 2,
      period_end: '2025-06-01T12:00:00Z',
    });
    expect(recs.filter((x) => x.op === 'seat')).toEqual([
      expect.objectContaining({
        entitlement_id: manual,
        subject_type: 'user',
        subject_id: 'alice',
        assigned_by: 'auto',
      }),
    ]);
    expect(recs.filter((x) => x.op === 'manual_entitlement')).toEqual([
      expect.objectContaining({
        entitlement_id: manual,
        product_id: 'cam',
        policy_json: { type: 'per_user', max_seats: 5 },
        status: 'active',
      }),
    ]);
    const audit = recs.filter((x) => x.op === 'audit');
    const head = recs.find((x) => x.op === 'audit_head')!;
    expect(audit[0]!.seq).toBe(1);
    expect(head).toEqual({ op: 'audit_head', seq: audit.at(-1)!.seq, hash: audit.at(-1)!.hash });
    // The export itself is audited, after the head it carries.
    const last = w.h.store.audit.page(0, 1000).at(-1)!;
    expect(last.action).toBe('sync.export');
    expect(last.seq).toBe(head.seq + 1);
    expect(w.h.services.sync.status().last_export).toMatchObject({
      seq: 1,
      audit_seq: head.seq,
      file: r.file,
    });
  });

  it('the next export chains to the previous one, counts only what happened since, and carries clock events', async () => {
    w = createWorld();
    await w.importFile(
      w.sign(1, {
        entitlements: [ent('ent_a', { policy_json: { type: 'concurrent', max_seats: 2 } })],
      }),
    );
    await lease('u1');
    await lease('u2');
    const out = join(w.h.dir, 'outbox');
    const first = w.h.services.sync.exportTo({ outDir: out, actor: 'test' });
    // The clock steps back two hours: a lease is refused and the time guard records it.
    w.h.clock.advance(-2 * 3_600_000);
    expect((await lease('u3')).status).toBe(503);
    w.h.clock.advance(3 * 3_600_000);
    await lease('u9');
    const second = w.h.services.sync.exportTo({ outDir: out, actor: 'test' });
    expect(second.seq).toBe(2);
    const summary = await verifyExport(second.file, w.h.info.public_key, { prev: first.file });
    expect(summary).toMatchObject({ seq: 2, enrolment: false, prev: first.manifest_sha256 });
    const recs = records(second.file);
    expect(recs.some((x) => x.op === 'enrolment')).toBe(false);
    // Two leases were running when the period began: the peak counts them; the refusal for the clock is no denial.
    expect(recs.find((x) => x.op === 'usage')).toMatchObject({
      entitlement_id: 'ent_a',
      peak_concurrent: 2,
      grants: 1,
      denials: 0,
      unique_subjects: 1,
      period_start: first.period_end,
    });
    expect(recs.filter((x) => x.op === 'clock_event').map((x) => x.kind)).toEqual([
      'suspect',
      'recovered',
    ]);
    const audit = recs.filter((x) => x.op === 'audit');
    const firstHead = records(first.file).find((x) => x.op === 'audit_head')!;
    expect(audit[0]!.seq).toBe(firstHead.seq + 1);
    expect(audit[0]!.prev_hash).toBe(firstHead.hash);
    // Out of order, the chain check says so.
    await refusedExport(first.file, w.h.info.public_key, /does not follow the previous export/, {
      prev: second.file,
    });
  });

  it('an export verifies only with its server key; a flipped byte anywhere fails the check', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a')] }));
    const r = w.h.services.sync.exportTo({ outDir: join(w.h.dir, 'out'), actor: 'test' });
    const bytes = readFileSync(r.file);
    await refusedExport(r.file, generateSigningKey().publicPaserk, /signed by another key/);
    const manifestEnd = bytes.indexOf(0x0a, 9);
    for (const at of [
      2,
      8,
      12,
      manifestEnd - 30,
      manifestEnd,
      manifestEnd + 5,
      bytes.length - 2,
      bytes.length - 1,
    ]) {
      const damaged = Buffer.from(bytes);
      damaged[at] = damaged[at]! ^ 0x01;
      const file = join(w.h.dir, `damaged-${at}.bpsync`);
      writeFileSync(file, damaged);
      await refusedExport(file, w.h.info.public_key, /./);
    }
    const appended = join(w.h.dir, 'appended.bpsync');
    writeFileSync(appended, Buffer.concat([bytes, Buffer.from('x')]));
    await refusedExport(
      appended,
      w.h.info.public_key,
      /the payload is \d+ bytes, the manifest says/,
    );
    // An export is not an import: the server refuses its own export as a bundle.
    await w.expectRefused(r.file, ['unknown_key', 'malformed']);
  });

  it('an export made from an edited audit row fails the vendor check', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a')] }));
    const db = w.h.store.db;
    dropTriggers(w.h.store, 'audit_log', ['audit_log_no_update']);
    db.prepare("UPDATE audit_log SET actor = 'nobody' WHERE seq = 2").run();
    const r = w.h.services.sync.exportTo({ outDir: join(w.h.dir, 'out'), actor: 'test' });
    await refusedExport(
      r.file,
      w.h.info.public_key,
      /audit row 2 does not match its hash \(the row was edited\)/,
    );
  });
});

describe('audit verify', () => {
  it('passes an intact chain', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a')] }));
    const r = w.h.services.audit.verify();
    expect(r).toMatchObject({ ok: true, firstBreak: null });
    expect(r.rows).toBeGreaterThan(3);
  });

  it('catches an edited row, a deleted row, and rows removed after the last export', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a')] }));
    await w.importFile(w.sign(2, { entitlements: [ent('ent_b')] }));
    const db = w.h.store.db;
    dropTriggers(w.h.store, 'audit_log', ['audit_log_no_update', 'audit_log_no_delete']);
    const original = db.prepare('SELECT details FROM audit_log WHERE seq = 3').get() as {
      details: string;
    };
    db.prepare(`UPDATE audit_log SET details = '{"forged":true}' WHERE seq = 3`).run();
    expect(w.h.services.audit.verify()).toMatchObject({
      ok: false,
      firstBreak: { seq: 3, reason: 'row content does not match its hash' },
    });
    db.prepare('UPDATE audit_log SET details = ? WHERE seq = 3').run(original.details);
    expect(w.h.services.audit.verify().ok).toBe(true);

    w.h.services.sync.exportTo({ outDir: join(w.h.dir, 'out'), actor: 'test' });
    const head = w.h.store.audit.head();
    // Removing the newest rows leaves a chain that is intact in itself, but the export carried its head.
    db.prepare('DELETE FROM audit_log WHERE seq >= ?').run(head.seq - 1);
    expect(w.h.services.audit.verify()).toMatchObject({
      ok: false,
      firstBreak: {
        reason: expect.stringMatching(
          /the audit head carried by export 1 .* is no longer in the chain/,
        ),
      },
    });

    db.prepare('DELETE FROM audit_log WHERE seq = 2').run();
    expect(w.h.services.audit.verify()).toMatchObject({
      ok: false,
      firstBreak: { seq: 2, reason: 'row 2 is missing' },
    });
  });
});
