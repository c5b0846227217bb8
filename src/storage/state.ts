import type { Db } from './db.ts';

/** Small key/value server state (server id, time high-water mark, settings). */
export function createStateRepo(db: Db) {
  const get = db.prepare<[string], { value: string }>('SELECT value FROM server_state WHERE key = ?');
  const set = db.prepare<[string, string]>(
    'INSERT INTO server_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
  );
  return {
    get(key: string): string | undefined {
      return get.get(key)?.value;
    },
    set(key: string, value: string): void {
      set.run(key, value);
    },
  };
}

export type StateRepo = ReturnType<typeof createStateRepo>;
