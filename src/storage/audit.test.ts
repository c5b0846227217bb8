import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { openStore, type Store } from './store.ts';
import { GENESIS_HASH } from './audit.ts';
import { tempDir } from '../../test/helpers.ts';

let dir: string;
let store: Store;
beforeEach(() => {
  dir = tempDir();
  store = openStore(join(dir, 'license.db'));
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
    expect(store.audit.verify()).toEqual({ rows: 5, head: rows[4]!.hash, firstBreak: null });
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
    expect(store.audit.verify().firstBreak).toEqual({
      seq: 3,
      reason: 'row content does not match its hash',
    });
  });

  it('shows a deleted row', () => {
    store.db.exec('DROP TRIGGER audit_log_no_delete');
    store.db.prepare('DELETE FROM audit_log WHERE seq = 2').run();
    expect(store.audit.verify().firstBreak).toEqual({ seq: 2, reason: 'row 2 is missing' });
  });

  it('shows a rewritten chain tail that does not link up', () => {
    store.db.exec('DROP TRIGGER audit_log_no_update');
    store.db.prepare(`UPDATE audit_log SET prev_hash = '${'f'.repeat(64)}' WHERE seq = 4`).run();
    expect(store.audit.verify().firstBreak).toEqual({
      seq: 4,
      reason: 'prev_hash does not match the previous row',
    });
  });
});
