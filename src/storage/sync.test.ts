// Store.sync, the SyncStore of src/domain/sync-store.ts for SQLite: the pieces the import asks the
// store for instead of reaching for the raw handle (read slices, the work folder, step length).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dirname, join } from 'node:path';
import { rmSync } from 'node:fs';
import { SERVER_BUSY_TIMEOUT_MS } from './db.ts';
import { openStore, type Store } from './store.ts';
import { tempDir } from '../../test/helpers.ts';

let dir: string;
let store: Store;
let other: Store;
const file = () => join(dir, 'license.db');

beforeEach(() => {
  dir = tempDir();
  store = openStore(file(), { busyTimeoutMs: SERVER_BUSY_TIMEOUT_MS });
  other = openStore(file());
});
afterEach(() => {
  other.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('Store.sync', () => {
  it('is one repository per connection, made on first use', () => {
    expect(store.sync).toBe(store.sync);
    expect(store.sync).not.toBe(other.sync);
  });

  it('tells the serving connection (short busy timeout) from a CLI one', () => {
    expect(store.sync.waitsBriefly()).toBe(true);
    expect(other.sync.waitsBriefly()).toBe(false);
  });

  it('puts its work folder beside the database', () => {
    expect(store.sync.workDir('sync-applying')).toBe(join(dirname(file()), 'sync-applying'));
  });

  it('reads one snapshot between beginRead and endRead, without the write lock', () => {
    store.sync.beginRead();
    try {
      expect(store.db.inTransaction).toBe(true);
      expect(store.state.get('sync-test')).toBeUndefined();
      // Another connection may write meanwhile (no write lock held here)...
      other.tx(() => other.state.set('sync-test', 'written'));
      // ...and this snapshot does not see it until it ends.
      expect(store.state.get('sync-test')).toBeUndefined();
    } finally {
      store.sync.endRead();
    }
    expect(store.db.inTransaction).toBe(false);
    expect(store.state.get('sync-test')).toBe('written');
    // Ending twice is harmless: the preparing pass ends it in a finally as well.
    expect(() => store.sync.endRead()).not.toThrow();
  });

  it('marks the seen-set without the write lock, and finds the unlisted active bundle entitlements', () => {
    const now = Date.UTC(2025, 0, 1);
    const base = {
      tenantId: 'acme',
      productId: 'cad',
      policy: { type: 'concurrent' as const, max_seats: 1 },
      startsAt: 0,
      endsAt: now * 2,
      externalId: null,
      createdAt: now,
      updatedAt: now,
    };
    store.tx(() => {
      for (const id of ['ent_a', 'ent_b', 'ent_c'])
        store.entitlements.insert({ ...base, id, status: 'active', source: 'bundle', rev: 1 }, 30);
      store.entitlements.insert(
        { ...base, id: 'ent_r', status: 'revoked', source: 'bundle', rev: 1 },
        30,
      );
      store.entitlements.insert(
        { ...base, id: 'ent_m', status: 'active', source: 'manual', rev: null },
        30,
      );
    });
    store.sync.beginSnapshot();
    // Another connection holds the write lock: marking still works (TEMP belongs to the connection).
    other.db.exec('BEGIN IMMEDIATE');
    try {
      expect(store.sync.markSeen('ent_a')).toBe(true);
      expect(store.sync.markSeen('ent_a')).toBe(false);
    } finally {
      other.db.exec('ROLLBACK');
    }
    expect([...store.sync.unseen()]).toEqual(['ent_b', 'ent_c']);
    expect(store.tx(() => store.sync.suspendUnseen(now + 1)).sort()).toEqual(['ent_b', 'ent_c']);
    expect(store.entitlements.get('ent_b')).toMatchObject({
      status: 'suspended',
      updatedAt: now + 1,
    });
    // Revoked stays revoked, manual ones are not the bundle's, the listed one is untouched.
    expect(store.entitlements.get('ent_r')?.status).toBe('revoked');
    expect(store.entitlements.get('ent_m')?.status).toBe('active');
    expect(store.entitlements.get('ent_a')?.status).toBe('active');
    expect(store.sync.bundleCounts()).toEqual({ active: 1, suspended: 2, revoked: 1 });
  });
});
