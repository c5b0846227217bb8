/**
 * Import of vendor bundles (vendor → server): every check of sync-bundles/README.md section 4, in
 * its order (import-checks.ts), every record checked and compared with the current rows WITHOUT
 * the write lock (import-plan.ts), then one short IMMEDIATE transaction that writes only the real
 * changes, or nothing (import-apply.ts); a big plan is applied in steps (import-steps.ts).
 */
import { closeSync, openSync } from 'node:fs';
import { basename } from 'node:path';
import { AppError } from '../errors.ts';
import { rejected, ruleOf } from './format.ts';
import {
  checkPayload,
  checkTime,
  orderOf,
  unchangedResult,
  verifyHeader,
  type Verified,
} from './import-checks.ts';
import { prepare, walker } from './import-plan.ts';
import { applyWrite, claim, finish, StalePlan } from './import-apply.ts';
import { applyInSteps, resumePending } from './import-steps.ts';
import type { SyncDeps } from './service.ts';

export { applyingNow, resumePending } from './import-steps.ts';

/** How one import runs and how the audit log names it. */
export interface ImportOptions {
  /** Check everything and report the diff; change nothing. */
  dryRun?: boolean;
  /** Who imports, for the audit log (`cli:alice`, `token:tok_…`, `sync-dir`). */
  actor: string;
  /** What the audit log calls the bundle: its file name, or the sha256 of an uploaded body. */
  name?: string;
  /** Plans of more writes than this are applied in steps (default APPLY_IN_ONE_MAX; tests lower it). */
  applyInOneMax?: number;
  /** At most this many writes per step (default: as many as STEP_MS allow; tests make steps small). */
  stepOps?: number;
}

/** An entitlement whose new max_seats is below the seats in use now. */
export interface SeatCut {
  entitlement_id: string;
  max_seats: number;
  in_use: number;
}

/** What a dry run would change, by entitlement id (settings: from → to). */
export interface ImportDiff {
  added: string[];
  changed: Array<{ entitlement_id: string; fields: string[] }>;
  revoked: string[];
  suspended: string[];
  ignored: string[];
  settings: Array<{ key: string; from: unknown; to: unknown }>;
  /** True when a list stopped at DIFF_LIST_LIMIT entries. */
  truncated: boolean;
}

/** The answer of an import (CLI `sync import --json`, `POST /v1/sync/import`); counts are exact. */
export interface ImportResult {
  /** `applied`; `unchanged` (this very bundle was the last one imported); `dry_run`. */
  status: 'applied' | 'unchanged' | 'dry_run';
  seq: number;
  manifest_sha256: string;
  added: number;
  changed: number;
  revoked: number;
  unchanged: number;
  suspended: number;
  /** Records naming an entitlement that was revoked for good: skipped. */
  ignored: number;
  /** Settings whose value changed. */
  settings: string[];
  /** Entitlements whose new max_seats is below what is in use now (nothing is cut; see the README). */
  seats_cut: SeatCut[];
  dry_run?: true;
  diff?: ImportDiff;
}

/** Prepared plans thrown away because another writer changed entitlements before the apply. */
const MAX_PREPARES = 3;
/**
 * A plan of more writes than this is applied in steps (one short transaction each) instead of one
 * transaction: 100,000 new entitlements take ~2 s of writing, far too long to hold the lock.
 */
export const APPLY_IN_ONE_MAX = 2000;

/**
 * Imports one bundle file: finishes a pending stepwise apply first, then the checks in their order,
 * then prepare and apply. Refusals throw bundle_rejected (422, `details.rule`) and, unless a dry
 * run, are audited; a stepwise apply whose copy is lost throws conflict; entitlements changing
 * under every attempt throw busy (503); storage errors (SQLite, errno) pass through for the faces
 * to answer (storageFailure, src/storage/failures.ts).
 */
export async function importBundle(
  deps: SyncDeps,
  file: string,
  opts: ImportOptions,
): Promise<ImportResult> {
  const now = deps.clock.now();
  let seq: number | undefined;
  try {
    const fd = openSync(file, 'r');
    try {
      if (!opts.dryRun) {
        // A big import interrupted half-way (crash, full disk, busy past the deadline) is finished
        // before anything else; when it is this very bundle, that is this import's result.
        const resumed = await resumePending(deps, { file, fd });
        if (resumed) return resumed;
      }
      const v = verifyHeader(deps, fd);
      seq = v.manifest.seq;
      if (orderOf(deps, v) === 'same') return unchangedResult(v);
      checkTime(v.manifest, now);
      await checkPayload(file, v);
      return await prepareAndApply(deps, file, fd, v, now, opts);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    const rule = ruleOf(err);
    if (rule !== undefined && !opts.dryRun)
      auditRejection(deps, err as AppError, opts, now, seq, file);
    throw err;
  }
}

/**
 * Prepares the bundle outside the write lock (every record parsed, checked and compared with the
 * current rows, which are read without the lock), then applies only the real changes: in one short
 * IMMEDIATE transaction, or for a big plan in steps of ~10-25 ms of writing each (applyInSteps). The
 * lock is waited for on timers. Another writer changing entitlements or importing between prepare
 * and apply makes the plan stale: it is made again.
 */
async function prepareAndApply(
  deps: SyncDeps,
  file: string,
  fd: number,
  v: Verified,
  now: number,
  opts: ImportOptions,
): Promise<ImportResult> {
  for (let attempt = 1; ; attempt++) {
    const plan = await prepare(deps, fd, v, now);
    const m = v.manifest;
    const result: ImportResult = {
      status: opts.dryRun ? 'dry_run' : 'applied',
      seq: m.seq,
      manifest_sha256: v.hash,
      ...plan.counts,
      settings: plan.diff.settings.map((s) => s.key),
      seats_cut: plan.seatsCut,
    };
    if (opts.dryRun) return { ...result, dry_run: true, diff: plan.diff };
    try {
      if (plan.writeCount + plan.counts.suspended <= (opts.applyInOneMax ?? APPLY_IN_ONE_MAX)) {
        return await deps.store.txAsync(() => {
          if (!claim(deps, plan, v, now, opts)) return unchangedResult(v);
          const walk = walker(fd, v, plan);
          for (let w = walk.next(); w !== null; w = walk.next()) applyWrite(deps, w, m.seq, now);
          // The file is read again here; a change since prepare must not slip through.
          if (!walk.intact()) throw rejected('malformed', 'the file changed while it was read');
          deps.store.sync.suspendUnseen(now);
          finish(deps, v, now, opts, plan, false);
          return result;
        });
      }
      return await applyInSteps(deps, file, plan, v, now, opts, result);
    } catch (err) {
      if (!(err instanceof StalePlan)) throw err;
      if (attempt >= MAX_PREPARES) {
        throw new AppError(
          'busy',
          'entitlements kept changing while the bundle was being prepared; nothing was changed',
          { retry_after_seconds: 1 },
        );
      }
      // Another process may have started applying a bundle in steps meanwhile: finish it first.
      await resumePending(deps, undefined);
    }
  }
}

/** A refusal gets its own small transaction, after the failed one rolled back. */
export function auditRejection(
  deps: SyncDeps,
  err: AppError,
  opts: ImportOptions,
  now: number,
  seq: number | undefined,
  file: string,
): void {
  try {
    deps.store.tx(() =>
      deps.store.audit.append({
        at: now,
        actor: opts.actor,
        action: 'sync.import_rejected',
        targetType: 'sync_bundle',
        targetId: seq === undefined ? null : String(seq),
        details: {
          rule: err.details.rule,
          message: err.message,
          file: opts.name ?? basename(file),
          ...(seq !== undefined ? { seq } : {}),
        },
      }),
    );
  } catch {
    // The refusal itself is what the caller must see; a failure to audit it (a busy database) is not.
  }
}
