import { AppError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import { toIso } from '../clock.ts';
import { newId } from '../ids.ts';
import { DEFAULT_PAGE_SIZE, decodeCursor, encodeCursor, pageOf, SEQ_KEY } from './cursor.ts';
import type { Store, StoredEntitlement } from './store.ts';
import type { Actor, Entitlement, EntitlementStatus, Page, Policy } from './types.ts';
import { deriveStatus, graceDays, statusBounds } from './types.ts';
import {
  assertManualChange,
  changeRefusal,
  movesAccount,
  policyTypeLocked,
  termIsValid,
  termWarnings,
  type TermWarning,
} from './entitlement-rules.ts';

export interface EntitlementDeps {
  store: Store;
  clock: Clock;
  /**
   * Called after an entitlement is created or a change to its terms commits (update, suspend,
   * resume, revoke, renew, an import's creations and updates), so requests waiting for seats get
   * the answer of now (the lease service's entitlementChanged, wired in context.ts).
   */
  onChange?: ((entitlementId: string) => void) | undefined;
}

/** A new entitlement's terms, as a face parsed them (times in epoch ms). */
export interface EntitlementInput {
  tenantId: string;
  productId: string;
  policy: Policy;
  startsAt: number;
  endsAt: number;
  externalId?: string | undefined;
}

/** The fields an update changes; the others are left out. `externalId: null` removes it. */
export interface EntitlementPatch {
  policy?: Policy | undefined;
  startsAt?: number | undefined;
  endsAt?: number | undefined;
  externalId?: string | null | undefined;
}

export type ImportAction = 'created' | 'updated' | 'unchanged';

export interface ImportResult {
  created: number;
  updated: number;
  /** Items matching an entitlement by external_id whose terms were already the same: not written. */
  unchanged: number;
  total: number;
  /** `warnings` only when the item's term has any (termWarnings, entitlement-rules.ts). */
  items: Array<{
    index: number;
    entitlementId: string;
    action: ImportAction;
    warnings?: TermWarning[];
  }>;
}

/** How many bad items an import error lists (details.errors); details.error_count counts them all. */
export const MAX_IMPORT_ERRORS_SHOWN = 100;

/** One bad item of a bulk import, by its index in the request. */
export interface ImportItemError {
  index: number;
  code: string;
  message: string;
  path?: string;
}

/** The refusal of a whole bulk import: `invalid_request` listing the bad items by index. */
export function importError(
  errorCount: number,
  total: number,
  errors: ImportItemError[],
): AppError {
  return new AppError(
    'invalid_request',
    `${errorCount} of ${total} entitlements are invalid; nothing was imported`,
    { error_count: errorCount, errors },
    'fix the items listed in details.errors (by index) and send the whole batch again',
  );
}

/** A bulk import worked out without the lock (see planImport). */
interface ImportPlan {
  /** The entitlement epoch the plan was made against: the apply checks it did not move. */
  epoch: bigint | number;
  now: number;
  steps: Array<{ index: number; e: Entitlement; action: ImportAction }>;
}

/** Thrown under the lock when entitlements changed since the plan was made: plan again. */
class StaleImport extends Error {}

/** The import's planning gives the event loop back after this long (ms). */
const PLAN_SLICE_MS = 8;

const MANUAL_PROVISIONING_KEY = 'allow_manual_provisioning';

/** Adds calendar months, clamping the day (Jan 31 + 1 month = Feb 28/29). */
export function addMonths(ms: number, months: number): number {
  const d = new Date(ms);
  const day = d.getUTCDate();
  const target = new Date(
    Date.UTC(
      d.getUTCFullYear(),
      d.getUTCMonth() + months,
      1,
      d.getUTCHours(),
      d.getUTCMinutes(),
      d.getUTCSeconds(),
      d.getUTCMilliseconds(),
    ),
  );
  const lastDay = new Date(
    Date.UTC(target.getUTCFullYear(), target.getUTCMonth() + 1, 0),
  ).getUTCDate();
  target.setUTCDate(Math.min(day, lastDay));
  return target.getTime();
}

/**
 * Entitlements: the customer's contracts, and their lifecycle. Every write also commits its audit
 * row. Besides the codes each function lists, a write may fail in the store (busy, full or
 * read-only disk: raw store errors, which the faces answer `busy`, `storage_full`,
 * `storage_unavailable`).
 */
export function createEntitlementService({ store, clock, onChange }: EntitlementDeps) {
  /** The committed entitlement, after telling onChange. */
  function changed(e: Entitlement): Entitlement {
    onChange?.(e.id);
    return e;
  }

  function mustGet(id: string): Entitlement {
    const e = store.entitlements.get(id);
    if (!e) throw new AppError('not_found', `no entitlement ${id}`);
    return e;
  }

  function assertManualAllowed(): void {
    if (store.state.get(MANUAL_PROVISIONING_KEY) === 'false') {
      throw new AppError(
        'forbidden',
        'manual provisioning is closed on this server by the vendor; entitlements arrive in signed bundles only',
      );
    }
  }

  function build(input: EntitlementInput, now: number): Entitlement {
    return {
      id: newId('ent'),
      tenantId: input.tenantId,
      productId: input.productId,
      policy: input.policy,
      startsAt: input.startsAt,
      endsAt: input.endsAt,
      status: 'active',
      source: 'manual',
      externalId: input.externalId ?? null,
      rev: null,
      createdAt: now,
      updatedAt: now,
    };
  }

  function createdAudit(e: Entitlement, actor: Actor) {
    return {
      at: e.createdAt,
      actor,
      action: 'entitlement.create',
      targetType: 'entitlement',
      targetId: e.id,
      details: {
        tenant_id: e.tenantId,
        product_id: e.productId,
        policy: e.policy,
        starts_at: toIso(e.startsAt),
        ends_at: toIso(e.endsAt),
        external_id: e.externalId,
      },
    };
  }

  /** Applies a lifecycle change; the audit row commits with it. */
  function transition(
    id: string,
    actor: Actor,
    action: string,
    change: (e: Entitlement, now: number) => Record<string, unknown>,
  ): Entitlement {
    return changed(
      store.tx(() => {
        const e = mustGet(id);
        const now = clock.now();
        const details = change(e, now);
        e.updatedAt = now;
        store.entitlements.update(e, graceDays(e.policy));
        store.audit.append({
          at: now,
          actor,
          action,
          targetType: 'entitlement',
          targetId: id,
          details,
        });
        return e;
      }),
    );
  }

  /**
   * The bulk import's plan, made without the write lock: every item checked, each upsert matched,
   * unchanged ones found. Throws the import error listing the bad items.
   */
  async function planImport(items: EntitlementInput[]): Promise<ImportPlan> {
    assertManualAllowed();
    const epoch = store.entitlements.epoch();
    const now = clock.now();
    const errors: ImportItemError[] = [];
    let errorCount = 0;
    const fail = (index: number, code: string, message: string) => {
      errorCount++;
      if (errors.length < MAX_IMPORT_ERRORS_SHOWN) errors.push({ index, code, message });
    };
    const seen = new Map<string, number>();
    const steps: ImportPlan['steps'] = [];
    let sliceStart = performance.now();
    for (let index = 0; index < items.length; index++) {
      // Give the event loop back every few ms: 100,000 lookups take a while.
      if ((index & 255) === 255 && performance.now() - sliceStart > PLAN_SLICE_MS) {
        await new Promise((r) => setImmediate(r));
        sliceStart = performance.now();
      }
      const input = items[index]!;
      const ext = input.externalId;
      if (ext !== undefined) {
        const first = seen.get(ext);
        if (first !== undefined) {
          fail(index, 'conflict', `external_id ${ext} repeats item ${first}`);
          continue;
        }
        seen.set(ext, index);
        const existing = store.entitlements.getByExternalId(ext);
        if (existing) {
          const refusal = changeRefusal(existing, 'manual');
          if (refusal === 'owned_by_bundle')
            fail(
              index,
              'managed_by_bundle',
              `${existing.id} (external_id ${ext}) is managed by vendor bundles`,
            );
          else if (refusal === 'revoked_is_final')
            fail(index, 'conflict', `${existing.id} (external_id ${ext}) is revoked`);
          else if (movesAccount(existing, { tenantId: input.tenantId, productId: input.productId }))
            fail(
              index,
              'conflict',
              `${existing.id} (external_id ${ext}) belongs to another tenant or product`,
            );
          else {
            const same =
              JSON.stringify(existing.policy) === JSON.stringify(input.policy) &&
              existing.startsAt === input.startsAt &&
              existing.endsAt === input.endsAt;
            const e: Entitlement = same
              ? existing
              : {
                  ...existing,
                  policy: input.policy,
                  startsAt: input.startsAt,
                  endsAt: input.endsAt,
                  updatedAt: now,
                };
            steps.push({ index, e, action: same ? 'unchanged' : 'updated' });
          }
          continue;
        }
      }
      steps.push({ index, e: build(input, now), action: 'created' });
    }
    if (errorCount > 0) throw importError(errorCount, items.length, errors);
    return { epoch, now, steps };
  }

  return {
    /**
     * One entitlement by id.
     *
     * @throws AppError `not_found`
     */
    get: mustGet,

    /** Its status now (deriveStatus in types.ts). Throws nothing. */
    status(e: Entitlement): EntitlementStatus {
      return deriveStatus(e, clock.now());
    },

    /**
     * Provisions an entitlement by hand (source `manual`, status `active`).
     *
     * @throws AppError `forbidden` (the vendor closed manual provisioning); `conflict` (the
     *   external_id is taken)
     */
    create(input: EntitlementInput, actor: Actor): Entitlement {
      const created = store.tx(() => {
        assertManualAllowed();
        if (
          input.externalId !== undefined &&
          store.entitlements.getByExternalId(input.externalId)
        ) {
          throw new AppError(
            'conflict',
            `an entitlement with external_id ${input.externalId} exists already`,
            { external_id: input.externalId },
            'use the bulk import to upsert by external_id',
          );
        }
        const e = build(input, clock.now());
        store.entitlements.insert(e, graceDays(e.policy));
        store.audit.append(createdAudit(e, actor));
        return e;
      });
      // Requests waiting on a full entitlement of the same tenant and product may fit on it.
      return changed(created);
    },

    /**
     * A page of entitlements in creation order, filtered; `status` is the derived one.
     *
     * @throws AppError `invalid_request` (a cursor this list did not give out)
     */
    list(filter: {
      idPrefix?: string | undefined;
      tenantId?: string | undefined;
      productId?: string | undefined;
      status?: EntitlementStatus | undefined;
      cursor?: string | undefined;
      limit?: number | undefined;
    }): Page<StoredEntitlement> {
      const limit = filter.limit ?? DEFAULT_PAGE_SIZE;
      const rows = store.entitlements.list({
        idPrefix: filter.idPrefix,
        tenantId: filter.tenantId,
        productId: filter.productId,
        status: filter.status === undefined ? undefined : statusBounds(filter.status, clock.now()),
        afterSeq:
          filter.cursor === undefined ? 0 : Number(decodeCursor('e', filter.cursor, SEQ_KEY)),
        limit: limit + 1,
      });
      return pageOf(rows, limit, (e) => encodeCursor('e', e.seq));
    },

    /**
     * Changes the fields the patch gives; one audit row with what was before and after. A patch
     * that changes nothing writes nothing.
     *
     * @throws AppError `not_found`; `managed_by_bundle`; `conflict` (revoked, the policy type
     *   changing under leases or seats, or the external_id taken); `invalid_request` (ends_at not
     *   after starts_at)
     */
    update(id: string, patch: EntitlementPatch, actor: Actor): Entitlement {
      const updated = store.tx(() => {
        const e = mustGet(id);
        assertManualChange(e, 'update');
        const before: Record<string, unknown> = {};
        const after: Record<string, unknown> = {};
        const set = <K extends keyof Entitlement>(
          key: K,
          field: string,
          value: Entitlement[K],
          show: (v: Entitlement[K]) => unknown = (v) => v,
        ) => {
          if (JSON.stringify(e[key]) === JSON.stringify(value)) return;
          before[field] = show(e[key]);
          after[field] = show(value);
          e[key] = value;
        };
        if (patch.policy !== undefined) {
          const c = store.leases.counters(id);
          if (policyTypeLocked(e.policy, patch.policy, c)) {
            throw new AppError(
              'conflict',
              `${id} has leases or seats under ${e.policy.type}; its policy type cannot change while they exist`,
              { active_leases: c.activeLeases, seats_assigned: c.seatsAssigned },
              'revoke the seats and let the leases end, or create a new entitlement',
            );
          }
          set('policy', 'policy_json', patch.policy);
        }
        if (patch.startsAt !== undefined) set('startsAt', 'starts_at', patch.startsAt, toIso);
        if (patch.endsAt !== undefined) set('endsAt', 'ends_at', patch.endsAt, toIso);
        if (patch.externalId !== undefined) {
          if (
            patch.externalId !== null &&
            patch.externalId !== e.externalId &&
            store.entitlements.getByExternalId(patch.externalId)
          ) {
            throw new AppError(
              'conflict',
              `an entitlement with external_id ${patch.externalId} exists already`,
            );
          }
          set('externalId', 'external_id', patch.externalId);
        }
        if (!termIsValid(e.startsAt, e.endsAt)) {
          throw new AppError('invalid_request', 'ends_at must be after starts_at', {
            issues: [{ path: 'ends_at', message: 'must be after starts_at' }],
          });
        }
        if (Object.keys(after).length === 0) return e;
        const now = clock.now();
        e.updatedAt = now;
        store.entitlements.update(e, graceDays(e.policy));
        store.audit.append({
          at: now,
          actor,
          action: 'entitlement.update',
          targetType: 'entitlement',
          targetId: id,
          details: { before, after },
        });
        return e;
      });
      return changed(updated);
    },

    /**
     * No new leases or renewals until resumed.
     *
     * @throws AppError `not_found`; `managed_by_bundle`; `conflict` (revoked, or suspended already)
     */
    suspend(id: string, actor: Actor): Entitlement {
      return transition(id, actor, 'entitlement.suspend', (e) => {
        assertManualChange(e, 'suspend');
        e.status = 'suspended';
        return {};
      });
    },

    /**
     * Ends a suspension.
     *
     * @throws AppError `not_found`; `managed_by_bundle`; `conflict` (revoked: final; or not suspended)
     */
    resume(id: string, actor: Actor): Entitlement {
      return transition(id, actor, 'entitlement.resume', (e) => {
        assertManualChange(e, 'resume');
        e.status = 'active';
        return {};
      });
    },

    /**
     * Revokes for good: revocation is final.
     *
     * @throws AppError `not_found`; `managed_by_bundle`; `conflict` (revoked already)
     */
    revoke(id: string, actor: Actor): Entitlement {
      return transition(id, actor, 'entitlement.revoke', (e) => {
        assertManualChange(e, 'revoke');
        e.status = 'revoked';
        return {};
      });
    },

    /**
     * Extends the term by whole months: from the current end while the term or its grace runs (a
     * continuous contract), from now once it has fully lapsed.
     *
     * @throws AppError `not_found`; `managed_by_bundle`; `conflict` (revoked)
     */
    renew(id: string, months: number, actor: Actor): Entitlement {
      return transition(id, actor, 'entitlement.renew', (e, now) => {
        assertManualChange(e, 'renew');
        const lapsed = deriveStatus(e, now) === 'expired';
        const from = lapsed ? now : e.endsAt;
        const previous = e.endsAt;
        e.endsAt = addMonths(from, months);
        return { period_months: months, ends_at_before: toIso(previous), ends_at: toIso(e.endsAt) };
      });
    },

    /**
     * Bulk import: all or nothing. Items with an external_id update the entitlement that has it
     * (upsert); others are created; an update that changes nothing is reported `unchanged` and not
     * written. Everything is checked and worked out first WITHOUT the write lock (the lookups read
     * without it, giving the event loop back every few ms); then one IMMEDIATE transaction writes
     * the creations and real changes, the lock waited for on timers (busy 503 past the deadline).
     * Another writer changing entitlements in between makes the plan stale: it is made again.
     *
     * @throws AppError `forbidden` (manual provisioning closed); `invalid_request` listing each bad
     *   item by index (importError: conflict, managed_by_bundle, revoked, another tenant); `busy`
     *   (entitlements kept changing, or the lock was not had in time)
     */
    async importMany(items: EntitlementInput[], actor: Actor): Promise<ImportResult> {
      for (let attempt = 1; ; attempt++) {
        const plan = await planImport(items);
        try {
          const result = await store.txAsync(() => {
            if (store.entitlements.epoch() !== plan.epoch) throw new StaleImport();
            assertManualAllowed();
            const created: string[] = [];
            const updated: string[] = [];
            for (const p of plan.steps) {
              if (p.action === 'created') {
                store.entitlements.insert(p.e, graceDays(p.e.policy));
                created.push(p.e.id);
              } else if (p.action === 'updated') {
                store.entitlements.update(p.e, graceDays(p.e.policy));
                updated.push(p.e.id);
              }
            }
            // One audit row per import, naming every entitlement it created or changed: the rows
            // themselves hold the content, and 100,000 entitlements stay one chained record.
            store.audit.append({
              at: plan.now,
              actor,
              action: 'entitlement.import',
              targetType: 'import',
              targetId: null,
              details: {
                count: plan.steps.length,
                created,
                updated,
                unchanged: plan.steps.length - created.length - updated.length,
              },
            });
            return {
              created: created.length,
              updated: updated.length,
              unchanged: plan.steps.length - created.length - updated.length,
              total: plan.steps.length,
              items: plan.steps.map((p) => {
                const warnings = termWarnings(p.e, plan.now);
                return {
                  index: p.index,
                  entitlementId: p.e.id,
                  action: p.action,
                  ...(warnings.length ? { warnings } : {}),
                };
              }),
            };
          });
          for (const p of plan.steps) if (p.action !== 'unchanged') onChange?.(p.e.id);
          return result;
        } catch (err) {
          if (!(err instanceof StaleImport)) throw err;
          if (attempt >= 3)
            throw new AppError(
              'busy',
              'entitlements kept changing while the import was being prepared; nothing was imported',
              { retry_after_seconds: 1 },
            );
        }
      }
    },
  };
}

export type EntitlementService = ReturnType<typeof createEntitlementService>;
