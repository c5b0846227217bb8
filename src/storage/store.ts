import { immediate, openDatabase, type Db, type OpenOptions } from './db.ts';
import { createEntitlementRepo } from './entitlements.ts';
import { createApiTokenRepo } from './api-tokens.ts';
import { createAuditRepo } from './audit.ts';
import { createStateRepo } from './state.ts';

/** The storage face the domain uses: repositories and a write transaction. No SQL leaves storage/. */
export interface Store {
  entitlements: ReturnType<typeof createEntitlementRepo>;
  apiTokens: ReturnType<typeof createApiTokenRepo>;
  audit: ReturnType<typeof createAuditRepo>;
  state: ReturnType<typeof createStateRepo>;
  /** Runs fn in one IMMEDIATE transaction (the write lock taken up front). */
  tx<T>(fn: () => T): T;
  /** Has another connection written since we last asked? (PRAGMA data_version) */
  changedElsewhere(): boolean;
  close(): void;
  readonly db: Db;
}

export function createStore(db: Db): Store {
  let lastDataVersion = db.pragma('data_version', { simple: true }) as number;
  return {
    db,
    entitlements: createEntitlementRepo(db),
    apiTokens: createApiTokenRepo(db),
    audit: createAuditRepo(db),
    state: createStateRepo(db),
    tx: (fn) => immediate(db, fn),
    changedElsewhere() {
      const v = db.pragma('data_version', { simple: true }) as number;
      const changed = v !== lastDataVersion;
      lastDataVersion = v;
      return changed;
    },
    close: () => {
      if (db.open) db.close();
    },
  };
}

export function openStore(file: string, opts: OpenOptions = {}): Store {
  return createStore(openDatabase(file, opts));
}
