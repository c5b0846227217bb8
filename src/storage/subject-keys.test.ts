// Migration 0007 on a version 6 database that holds duplicate subjects (issue 11.3): keys computed,
// duplicates merged without losing a row, every collision reported, and the server then counts
// one subject once.
import { afterEach, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../../test/helpers.ts';
import { buildV6Database, NFC_JOSE, NFD_JOSE, V6_NOW } from '../../test/subjects-v6.ts';
import { migrationNotes, openDatabase } from './db.ts';
import { MIGRATIONS } from './migrations.ts';

// Migrated through 0007 and every later migration.
const LATEST = MIGRATIONS.at(-1)!.version;
import { toIso } from '../clock.ts';

let h: Harness | undefined;
afterEach(() => h?.close());

const NOW = toIso(V6_NOW);
const rows = (sql: string, ...args: unknown[]) =>
  h!.store.db.prepare(sql).all(...args) as Array<Record<string, unknown>>;
const lease = (id: string, entitlementId: string) =>
  h!.req(
    'POST',
    '/v1/license/lease',
    {
      tenant_id: 'acme',
      product_id: 'cad',
      subject_type: entitlementId === 'ent_m' ? 'machine' : 'user',
      subject_id: id,
      entitlement_id: entitlementId,
    },
    null,
  );

describe('migration 0007: subject keys on a version 6 database with duplicates', () => {
  it('keeps the oldest seat of each subject, moves the others to seats_merged, fixes the counters and keys everything', () => {
    h = createHarness({ now: NOW, before: (file) => buildV6Database(file) });
    expect(h.store.db.pragma('user_version', { simple: true })).toBe(LATEST);

    expect(
      rows(
        'SELECT id, entitlement_id, subject_type, subject_id, subject_key FROM seats ORDER BY entitlement_id, assigned_at',
      ),
    ).toEqual([
      {
        id: 'seat_m1',
        entitlement_id: 'ent_m',
        subject_type: 'machine',
        subject_id: 'WS-042.corp.example',
        subject_key: 'ws-042.corp.example',
      },
      {
        id: 'seat_u2',
        entitlement_id: 'ent_u',
        subject_type: 'user',
        subject_id: 'Alice',
        subject_key: 'alice',
      },
      {
        id: 'seat_u5',
        entitlement_id: 'ent_u',
        subject_type: 'user',
        subject_id: NFD_JOSE,
        subject_key: NFC_JOSE,
      },
      {
        id: 'seat_u6',
        entitlement_id: 'ent_u',
        subject_type: 'user',
        subject_id: 'bob',
        subject_key: 'bob',
      },
    ]);
    // Nothing is lost: the merged seats are kept as they were, with the seat they merged into.
    expect(
      rows(
        'SELECT id, subject_id, subject_key, assigned_by, merged_into FROM seats_merged ORDER BY id',
      ),
    ).toEqual([
      {
        id: 'seat_m2',
        subject_id: 'ws-042.CORP.example',
        subject_key: 'ws-042.corp.example',
        assigned_by: 'auto',
        merged_into: 'seat_m1',
      },
      {
        id: 'seat_u1',
        subject_id: 'alice',
        subject_key: 'alice',
        assigned_by: 'auto',
        merged_into: 'seat_u2',
      },
      {
        id: 'seat_u3',
        subject_id: 'ALICE',
        subject_key: 'alice',
        assigned_by: 'auto',
        merged_into: 'seat_u2',
      },
      {
        id: 'seat_u4',
        subject_id: NFC_JOSE,
        subject_key: NFC_JOSE,
        assigned_by: 'auto',
        merged_into: 'seat_u5',
      },
    ]);
    expect(
      rows(
        'SELECT entitlement_id, active_leases, seats_assigned FROM entitlement_counters ORDER BY entitlement_id',
      ),
    ).toEqual([
      { entitlement_id: 'ent_c', active_leases: 3, seats_assigned: 0 },
      { entitlement_id: 'ent_m', active_leases: 0, seats_assigned: 1 },
      { entitlement_id: 'ent_u', active_leases: 1, seats_assigned: 3 },
    ]);
    // Leases keep their ids as first seen, get their keys, and the subject index moved to the key.
    expect(rows('SELECT id, subject_id, subject_key, state FROM leases ORDER BY seq')).toEqual([
      { id: 'lease_u1', subject_id: 'Alice', subject_key: 'alice', state: 'active' },
      { id: 'lease_c1', subject_id: 'CORP\\alice', subject_key: 'corp\\alice', state: 'active' },
      { id: 'lease_c2', subject_id: 'corp\\ALICE', subject_key: 'corp\\alice', state: 'active' },
      { id: 'lease_c3', subject_id: 'bob', subject_key: 'bob', state: 'active' },
      { id: 'lease_c4', subject_id: 'Bob', subject_key: 'bob', state: 'released' },
    ]);
    expect(
      h.store.db
        .prepare("SELECT name FROM pragma_index_info('leases_by_subject') ORDER BY seqno")
        .pluck()
        .all(),
    ).toEqual(['entitlement_id', 'subject_type', 'subject_key', 'state']);
    expect(
      h.store.db
        .prepare(
          "SELECT name FROM pragma_index_list('seats') WHERE \"unique\" = 1 AND origin = 'u'",
        )
        .pluck()
        .all(),
    ).toHaveLength(1);
    expect(
      h.store.db.prepare('SELECT subject_id FROM lease_events ORDER BY seq').pluck().all(),
    ).toEqual(['alice', 'alice', 'alice', NFC_JOSE, NFC_JOSE, 'bob']);
  });

  it('reports every collision in one audit row that chains on, and in a note for the operator; lease ids stay out', () => {
    h = createHarness({ now: NOW, before: (file) => buildV6Database(file) });
    // The harness's own tokens come after: the migration ran when the database was opened.
    const audit = h.store.audit.page(0, 100).filter((r) => !r.action.startsWith('token.'));
    expect(audit.map((r) => r.action)).toEqual(['entitlement.create', 'subjects.merged']);
    expect(h.services.audit.verify().firstBreak).toBeNull();
    const row = audit[1]!;
    expect(row).toMatchObject({
      seq: 2,
      at: V6_NOW,
      actor: 'system',
      target_type: 'server',
      target_id: null,
    });
    expect(JSON.parse(row.details)).toEqual({
      migration: '0007_subject_keys',
      seats_merged: 4,
      subjects_with_merged_seats: 3,
      subjects_with_several_leases: 1,
      truncated: false,
      seat_groups: [
        {
          entitlement_id: 'ent_m',
          subject_type: 'machine',
          kept: {
            seat_id: 'seat_m1',
            subject_id: 'WS-042.corp.example',
            assigned_at: '2025-01-01T00:01:00Z',
          },
          merged: [
            {
              seat_id: 'seat_m2',
              subject_id: 'ws-042.CORP.example',
              assigned_at: '2025-01-01T00:02:00Z',
              assigned_by: 'auto',
            },
          ],
        },
        {
          entitlement_id: 'ent_u',
          subject_type: 'user',
          kept: { seat_id: 'seat_u2', subject_id: 'Alice', assigned_at: '2025-01-01T00:01:00Z' },
          merged: [
            {
              seat_id: 'seat_u1',
              subject_id: 'alice',
              assigned_at: '2025-01-01T00:02:00Z',
              assigned_by: 'auto',
            },
            {
              seat_id: 'seat_u3',
              subject_id: 'ALICE',
              assigned_at: '2025-01-01T00:03:00Z',
              assigned_by: 'auto',
            },
          ],
        },
        {
          entitlement_id: 'ent_u',
          subject_type: 'user',
          kept: { seat_id: 'seat_u5', subject_id: NFD_JOSE, assigned_at: '2025-01-01T00:04:00Z' },
          merged: [
            {
              seat_id: 'seat_u4',
              subject_id: NFC_JOSE,
              assigned_at: '2025-01-01T00:05:00Z',
              assigned_by: 'auto',
            },
          ],
        },
      ],
      lease_groups: [
        {
          entitlement_id: 'ent_c',
          subject_type: 'user',
          leases: [
            {
              subject_id: 'CORP\\alice',
              granted_at: '2025-01-01T00:11:00Z',
              expires_at: '2025-06-01T13:00:00Z',
            },
            {
              subject_id: 'corp\\ALICE',
              granted_at: '2025-01-01T00:12:00Z',
              expires_at: '2025-06-01T13:00:00Z',
            },
          ],
        },
      ],
    });
    expect(row.details).not.toContain('lease_c');

    const notes = migrationNotes(h.store.db);
    expect(notes).toHaveLength(1);
    expect(notes[0]!.migration).toBe('0007_subject_keys');
    expect(notes[0]!.message).toBe(
      'subject ids that differ only in case or Unicode form are now one subject: 4 seats of 3 subjects merged into the oldest seat of the subject (moved to table seats_merged, nothing deleted); 1 subject holds several running leases on one entitlement (left to run; later grants share one); audit row 2 lists them',
    );
    expect(notes[0]!.details).toMatchObject({
      seats_merged: 4,
      audit_seq: 2,
      seats: [
        'ent_m machine:WS-042.corp.example kept seat_m1, merged seat_m2 (ws-042.CORP.example)',
        expect.stringContaining('kept seat_u2, merged seat_u1 (alice), seat_u3 (ALICE)'),
        expect.any(String),
      ],
    });
    expect(JSON.stringify(notes)).not.toContain('lease_c');
  });

  it('then counts each subject once: no new seat for another spelling, the running duplicates share one lease', async () => {
    h = createHarness({ now: NOW, before: (file) => buildV6Database(file) });
    const a = await lease('ALICE', 'ent_u');
    expect(a.status, JSON.stringify(a.body)).toBe(201);
    expect(a.body.lease_id).toBe('lease_u1');
    const j = await lease(NFC_JOSE, 'ent_u');
    expect(j.status).toBe(201);
    expect(h.store.leases.counters('ent_u').seatsAssigned).toBe(3);
    expect((await lease('carol', 'ent_u')).body.error.code).toBe('seats_exhausted');
    expect((await lease('ws-042.corp.EXAMPLE', 'ent_m')).status).toBe(201);
    expect(h.store.leases.counters('ent_m').seatsAssigned).toBe(1);

    const c = await lease('Corp\\Alice', 'ent_c');
    expect(c.status).toBe(201);
    expect(['lease_c1', 'lease_c2']).toContain(c.body.lease_id);
    // Two running leases of one subject still count until one ends: nobody new meanwhile.
    expect((await lease('dave', 'ent_c')).body.error.code).toBe('seats_exhausted');

    const usage = await h.req('GET', '/v1/entitlements/ent_u/usage');
    expect(usage.body.seats).toMatchObject({ total: 3, assigned: 3 });
  });

  it('runs once: reopening writes nothing more and has nothing to say', () => {
    h = createHarness({ now: NOW, before: (file) => buildV6Database(file) });
    const file = h.store.db.name;
    const rowsBefore = h.store.audit.head().seq;
    const again = openDatabase(file);
    try {
      expect(migrationNotes(again)).toEqual([]);
      expect(again.prepare('SELECT count(*) FROM audit_log').pluck().get()).toBe(rowsBefore);
      expect(
        again
          .prepare("SELECT count(*) FROM audit_log WHERE action = 'subjects.merged'")
          .pluck()
          .get(),
      ).toBe(1);
    } finally {
      again.close();
    }
  });

  it('writes no audit row and no note when no subjects collide', () => {
    h = createHarness({ now: NOW, before: (file) => buildV6Database(file, { duplicates: false }) });
    expect(h.store.db.pragma('user_version', { simple: true })).toBe(LATEST);
    expect(migrationNotes(h.store.db)).toEqual([]);
    expect(
      h.store.audit
        .page(0, 100)
        .filter((r) => !r.action.startsWith('token.'))
        .map((r) => r.action),
    ).toEqual(['entitlement.create']);
    expect(rows('SELECT count(*) AS n FROM seats_merged')).toEqual([{ n: 0 }]);
    expect(rows('SELECT subject_id, subject_key FROM seats ORDER BY id')).toEqual([
      { subject_id: 'WS-042.corp.example', subject_key: 'ws-042.corp.example' },
      { subject_id: 'alice', subject_key: 'alice' },
      { subject_id: 'amy', subject_key: 'amy' },
      { subject_id: 'bob', subject_key: 'bob' },
    ]);
  });
});
