import { AppError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import { newId } from '../ids.ts';
import { decodeCursor, encodeCursor, pageOf, SEQ_KEY } from './cursor.ts';
import type { Store } from './store.ts';
import type { TimeGuard } from './time-guard.ts';
import type {
  Actor,
  Entitlement,
  Installation,
  Page,
  QuotaState,
  StoredInstallation,
} from './types.ts';
import {
  checkInstallable,
  checkInstallFields,
  checkQuotaFree,
  checkVersion,
  quotaLimit,
  quotaStates,
  sameInstall,
  type InstallInput,
} from './quota-rules.ts';

export type { Installation, QuotaState } from './types.ts';
export type { InstallInput } from './quota-rules.ts';

/** A page of installations when no limit is given. */
export const INSTALLATION_PAGE_SIZE = 100;
/** The largest page of installations a caller may ask for. */
export const INSTALLATION_PAGE_MAX = 1000;

/** An installation without the store's list order (what callers get). */
function plain({ seq: _seq, ...i }: StoredInstallation): Installation {
  return i;
}

/** Which installations a list shows; every field given must hold. */
export interface InstallationListFilter {
  entitlementId?: string | undefined;
  /** A tenant id: its entitlements' installations. */
  tenant?: string | undefined;
  quota?: string | undefined;
  /** Only installations of entitlements for one of these products (the template face's licenses). */
  productIds?: readonly string[] | undefined;
}

/**
 * Quotas (policy_json.quotas): a unit is used by recording an installation, returned by removing
 * it. The rules are quota-rules.ts (limits, the lifecycle, idempotency); this reads, asks them and
 * writes, each write in one IMMEDIATE transaction with its audit row, so the count and the insert
 * cannot interleave with another writer's (in this process or another): the limit is exact.
 * Besides the codes each function lists, a write may fail in the store (busy, full or read-only
 * disk).
 */
export function createQuotaService({
  store,
  clock,
  timeGuard,
}: {
  store: Store;
  clock: Clock;
  /** The vendor's terms are judged by a clock that is not behind (as leases are). */
  timeGuard: Pick<TimeGuard, 'status' | 'refusal'>;
}) {
  const { installations } = store;

  /**
   * May the entitlement take a new installation or a change now? Its lifecycle, and for a
   * bundle-managed one a clock that is not behind the last trusted time (a clock set back must
   * not reopen an ended term).
   */
  function checkChange(e: Entitlement, now: number): void {
    if (e.source === 'bundle' && timeGuard.status().suspect)
      throw timeGuard.refusal(e.id, now, 'new installations and changes');
    checkInstallable(e, now);
  }

  function entitlement(id: string): Entitlement {
    const e = store.entitlements.get(id);
    if (!e) throw new AppError('not_found', `no entitlement ${id}`);
    return e;
  }

  function mustGet(id: string): Installation {
    const i = installations.get(id);
    if (!i) throw new AppError('not_found', `no installation ${id}`);
    return plain(i);
  }

  return {
    /**
     * Could a new installation of `quota` be recorded on the entitlement now? The refusal install
     * would throw for its state (checkChange: the lifecycle and, bundle-managed, the clock; then
     * the quota's limit: quotaLimit, checkQuotaFree), or null. Checks and install share these
     * rules, so a check never promises what the install refuses.
     *
     * @returns the AppError install would throw (`entitlement_inactive`, `clock_suspect`,
     *   `quota_exhausted`, `invalid_request` for a quota the policy does not name), or null
     */
    canInstall(e: Entitlement, quota: string): AppError | null {
      try {
        checkChange(e, clock.now());
        checkQuotaFree(e, quota, quotaLimit(e, quota), installations.count(e.id, quota));
        return null;
      } catch (err) {
        if (err instanceof AppError) return err;
        throw err;
      }
    },

    /**
     * Records an installation: one unit of `input.quota`. A request with an idempotency key
     * (scoped to the entitlement) that made an installation already answers that installation
     * with `created: false` while it exists, in any status of the entitlement; the same key with
     * another body is refused. Field limits: checkInstallFields (quota-rules.ts).
     *
     * @throws AppError `not_found` (entitlement); `invalid_request` (a bad field, or a quota the
     *   policy does not name: details.issues names `quota`); `conflict` (the key made a different
     *   installation; details.installation_id); `entitlement_inactive` (not active: suspended,
     *   revoked, pending, in grace (details.status `grace`) or expired); `quota_exhausted`;
     *   `clock_suspect` (a bundle-managed entitlement while the clock is behind)
     */
    install(
      entitlementId: string,
      input: InstallInput,
      actor: Actor,
    ): { installation: Installation; created: boolean } {
      const want = checkInstallFields(input);
      return store.tx(() => {
        const e = entitlement(entitlementId);
        if (want.idempotencyKey !== null) {
          const first = installations.byKey(e.id, want.idempotencyKey);
          if (first) {
            if (sameInstall(first, want)) return { installation: plain(first), created: false };
            throw new AppError(
              'conflict',
              `idempotency key ${want.idempotencyKey} made installation ${first.id} with another body; use a new key for a new installation`,
              { installation_id: first.id, idempotency_key: want.idempotencyKey },
            );
          }
        }
        const now = clock.now();
        checkChange(e, now);
        const limit = quotaLimit(e, want.quota);
        checkQuotaFree(e, want.quota, limit, installations.count(e.id, want.quota));
        const installation: Installation = {
          id: newId('inst'),
          entitlementId: e.id,
          quota: want.quota,
          name: want.name,
          metadata: want.metadata,
          version: want.version,
          principalId: want.principalId,
          idempotencyKey: want.idempotencyKey,
          createdAt: now,
          updatedAt: now,
        };
        installations.insert(installation);
        installations.event(now, e.id, installation.quota, 1);
        store.audit.append({
          at: now,
          actor,
          action: 'installation.add',
          targetType: 'entitlement',
          targetId: e.id,
          details: {
            installation_id: installation.id,
            quota: installation.quota,
            name: installation.name,
            version: installation.version,
            principal_id: installation.principalId,
          },
        });
        return { installation, created: true };
      });
    },

    /**
     * Removes an installation, returning its unit; allowed in every status of the entitlement.
     * Its idempotency key is free again.
     *
     * @throws AppError `not_found` (no such entitlement, or no such installation on it)
     */
    remove(entitlementId: string, installationId: string, actor: Actor): Installation {
      return store.tx(() => {
        entitlement(entitlementId);
        const i = installations.get(installationId);
        if (!i || i.entitlementId !== entitlementId)
          throw new AppError('not_found', `no installation ${installationId} on ${entitlementId}`);
        const now = clock.now();
        installations.remove(i.id);
        installations.event(now, entitlementId, i.quota, -1);
        store.audit.append({
          at: now,
          actor,
          action: 'installation.remove',
          targetType: 'entitlement',
          targetId: entitlementId,
          details: { installation_id: i.id, quota: i.quota, name: i.name },
        });
        return plain(i);
      });
    },

    /**
     * One installation by id.
     *
     * @throws AppError `not_found`
     */
    get: mustGet,

    /**
     * Records the version an installation runs now; a change, so only while the entitlement is
     * active (in grace installations are read-only).
     *
     * @throws AppError `not_found`; `invalid_request` (a bad version); `entitlement_inactive`;
     *   `clock_suspect`
     */
    setVersion(installationId: string, version: string, actor: Actor): Installation {
      const checked = checkVersion(version);
      return store.tx(() => {
        const i = mustGet(installationId);
        const now = clock.now();
        checkChange(entitlement(i.entitlementId), now);
        installations.setVersion(i.id, checked, now);
        store.audit.append({
          at: now,
          actor,
          action: 'installation.version',
          targetType: 'entitlement',
          targetId: i.entitlementId,
          details: { installation_id: i.id, from: i.version, to: checked },
        });
        return { ...i, version: checked, updatedAt: now };
      });
    },

    /**
     * A page of installations in the order they were made, filtered by entitlement, tenant and
     * quota (the caller checks that the token may see them).
     *
     * @throws AppError `invalid_request` (a cursor this list did not give out)
     */
    list(
      filter: InstallationListFilter,
      cursor: string | undefined,
      limit = INSTALLATION_PAGE_SIZE,
    ): Page<Installation> {
      const afterSeq = cursor === undefined ? 0 : Number(decodeCursor('i', cursor, SEQ_KEY));
      const rows = installations.list({
        entitlementId: filter.entitlementId,
        tenantId: filter.tenant,
        quota: filter.quota,
        productIds: filter.productIds,
        afterSeq,
        limit: limit + 1,
      });
      const page = pageOf(rows, limit, (i) => encodeCursor('i', i.seq));
      return { items: page.items.map(plain), nextCursor: page.nextCursor };
    },

    /** One state per quota the entitlement's policy names, by name (none: []). Throws nothing. */
    states(e: Entitlement): QuotaState[] {
      if (e.policy.quotas === undefined) return [];
      return quotaStates(e, installations.counts(e.id));
    },
  };
}

export type QuotaService = ReturnType<typeof createQuotaService>;
