import type { Db } from './db.ts';
import type { ClockEventKind } from '../domain/store.ts';

/** The domain's StateRepo (plus delete, for sync): small key/value server state (server id, time high-water mark, settings) and the clock events. */
export function createStateRepo(db: Db) {
  const get = db.prepare<[string], { value: string }>(
    'SELECT value FROM server_state WHERE key = ?',
  );
  const set = db.prepare<[string, string]>(
    'INSERT INTO server_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
  );
  const del = db.prepare<[string]>('DELETE FROM server_state WHERE key = ?');
  const insertClockEvent = db.prepare(
    'INSERT INTO clock_events (at, kind, hwm, details) VALUES (?, ?, ?, ?) RETURNING seq',
  );
  const clockEvents = db.prepare<
    [number, number],
    { seq: number; at: number; kind: string; hwm: number; details: string }
  >('SELECT * FROM clock_events WHERE at >= ? ORDER BY seq LIMIT ?');
  const lastOfKind = db.prepare<[string], { seq: number | null }>(
    'SELECT max(seq) AS seq FROM clock_events WHERE kind = ?',
  );
  const bundleManaged = db
    .prepare(
      "SELECT EXISTS (SELECT 1 FROM entitlements WHERE source = 'bundle' AND status = 'active')",
    )
    .pluck();
  return {
    /** The seq of the newest clock event of a kind (0 when none). */
    lastClockEventSeq(kind: ClockEventKind): number {
      return lastOfKind.get(kind)?.seq ?? 0;
    },
    /** Appends a clock event; returns its seq. `at` and `hwm` are whole ms (the columns are STRICT INTEGER). */
    clockEvent(
      at: number,
      kind: ClockEventKind,
      hwm: number,
      details: Record<string, unknown>,
    ): number {
      const row = insertClockEvent.get(
        Math.floor(at),
        kind,
        Math.floor(hwm),
        JSON.stringify(details),
      ) as { seq: number };
      return Number(row.seq);
    },
    /** Is any active entitlement managed by a vendor bundle (the only kind a suspect clock refuses)? */
    hasBundleEntitlements(): boolean {
      return bundleManaged.get() === 1;
    },
    clockEvents(sinceMs: number, limit = 10_000) {
      return clockEvents.all(sinceMs, limit).map((r) => ({
        seq: r.seq,
        at: r.at,
        kind: r.kind,
        hwm: r.hwm,
        details: JSON.parse(r.details) as Record<string, unknown>,
      }));
    },
    get(key: string): string | undefined {
      return get.get(key)?.value;
    },
    set(key: string, value: string): void {
      set.run(key, value);
    },
    delete(key: string): void {
      del.run(key);
    },
  };
}
