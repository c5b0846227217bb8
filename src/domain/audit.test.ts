import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { openStore, type Store } from '../storage/store.ts';
import { createAuditService, GENESIS_HASH, type AuditService } from './audit.ts';
import { tempDir } from '../../test/helpers.ts';

let dir: string;
let store: Store;
let audit: AuditService;
beforeEach(() => {
  dir = tempDir();
  store = openStore(join(dir, 'license.db'));
  audit = createAuditService({ log: store.audit });
  store.tx(() => {
    for (let i = 1; i <= 5; i++)
      store.audit.append({
        at: i * 1000,
        actor: 'test',
        action: `thing.${i}`,
        targetType: 'x',
        targetId: `x${i}`,
        details: { n: i },
      });
  });
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the audit hash chain', () => {
  it('links every row to the one before from the genesis hash', () => {
    const rows = store.audit.page(0, 10);
    expect(rows[0]!.prev_hash).toBe(GENESIS_HASH);
    for (let i = 1; i < rows.length; i++) expect(rows[i]!.prev_hash).toBe(rows[i - 1]!.hash);
    expect(audit.verify()).toEqual({
      ok: true,
      rows: 5,
      head: { seq: 5, hash: rows[4]!.hash },
      firstBreak: null,
    });
  });

  it('refuses updates and deletes through SQL', () => {
    expect(() =>
      store.db.prepare("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2").run(),
    ).toThrow(/append-only/);
    expect(() => store.db.prepare('DELETE FROM audit_log WHERE seq = 2').run()).toThrow(
      /append-only/,
    );
  });

  it('shows an edited row even when the triggers were dropped', () => {
    store.db.exec('DROP TRIGGER audit_log_no_update');
    store.db.prepare(`UPDATE audit_log SET details = '{"n":99}' WHERE seq = 3`).run();
    expect(audit.verify().firstBreak).toEqual({
      seq: 3,
      reason: 'row content does not match its hash',
    });
  });

  it('shows a deleted row', () => {
    store.db.exec('DROP TRIGGER audit_log_no_delete');
    store.db.prepare('DELETE FROM audit_log WHERE seq = 2').run();
    expect(audit.verify().firstBreak).toEqual({ seq: 2, reason: 'row 2 is missing' });
  });

  it('shows a rewritten chain tail that does not link up', () => {
    store.db.exec('DROP TRIGGER audit_log_no_update');
    store.db.prepare(`UPDATE audit_log SET prev_hash = '${'f'.repeat(64)}' WHERE seq = 4`).run();
    expect(audit.verify().firstBreak).toEqual({
      seq: 4,
      reason: 'prev_hash does not match the previous row',
    });
  });
});

describe('the audit service', () => {
  it('pages the log in seq order with a cursor, and says where the head is', () => {
    const first = audit.page(0, 2);
    expect(first.rows.map((r) => r.seq)).toEqual([1, 2]);
    expect(first.nextCursor).toBe('2'); // the bare seq, as the route hands it out
    expect(first.head).toEqual(store.audit.head());
    const second = audit.page(2, 2);
    expect(second.rows.map((r) => r.seq)).toEqual([3, 4]);
    const last = audit.page(4, 2);
    expect(last.rows.map((r) => r.seq)).toEqual([5]);
    expect(last.nextCursor).toBeNull();
    expect(audit.page(5, 2)).toEqual({ rows: [], nextCursor: null, head: store.audit.head() });
  });

  it('gives an export the rows between two heads, as stored', () => {
    expect([...audit.rowsBetween(1, 3)]).toEqual(store.audit.page(1, 2));
    expect([...audit.rowsBetween(5, 5)]).toEqual([]);
  });

  it('reads an empty log as the genesis head, intact', () => {
    const empty = tempDir();
    const s = openStore(join(empty, 'license.db'));
    try {
      expect(createAuditService({ log: s.audit }).verify()).toEqual({
        ok: true,
        rows: 0,
        head: { seq: 0, hash: GENESIS_HASH },
        firstBreak: null,
      });
    } finally {
      s.close();
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
