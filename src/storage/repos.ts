import type { Db } from './db.ts';
import { createEntitlementRepo } from './entitlements.ts';
import { createApiTokenRepo } from './api-tokens.ts';
import { createAuditRepo } from './audit.ts';
import { createStateRepo } from './state.ts';
import { createLeaseRepo, createSeatRepo } from './leases.ts';
import { createUsageRepo } from './usage.ts';
import { createInstallationRepo } from './installations.ts';

/**
 * The repositories over one connection: the same SQL for SQLite (store.ts) and PostgreSQL
 * (pg/store.ts, through its driver). The concrete types carry the few extra reads and writes sync,
 * /metrics and the audit route use beyond the domain's seam (src/domain/store.ts).
 */
export function createRepos(db: Db) {
  return {
    entitlements: createEntitlementRepo(db),
    apiTokens: createApiTokenRepo(db),
    audit: createAuditRepo(db),
    state: createStateRepo(db),
    leases: createLeaseRepo(db),
    seats: createSeatRepo(db),
    installations: createInstallationRepo(db),
    usage: createUsageRepo(db),
  };
}

export type Repos = ReturnType<typeof createRepos>;
