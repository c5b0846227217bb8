/**
 * The sync service: BPSYNC/1 import and export and sync status (the audit chain checks are the
 * audit service's: domain/audit.ts). The faces (CLI, HTTP, folder watch, outbound sync) all call this.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toIso, type Clock } from '../clock.ts';
import type { ServerInfo } from '../data-dir.ts';
import type { AppError } from '../errors.ts';
import type { AnyStore as Store } from '../storage/store.ts';
import type { AuditService } from '../domain/audit.ts';
import type { SigningKey } from '../tokens/keys.ts';
import { ruleOf } from './format.ts';
import {
  applyingNow,
  auditRejection,
  importBundle,
  resumePending,
  type ImportOptions,
  type ImportResult,
} from './import.ts';
import { exportBundle, type ExportOptions, type ExportResult } from './export.ts';
import { pinnedVendorKeys } from './trust.ts';
import { receiveToFile } from './upload.ts';

/** What sync needs from the time guard (src/domain/time-guard.ts), kept loose on purpose. */
export interface TimeGuardLike {
  /** Inside the import's transaction: the bundle's signed iat and the import's `now` (ms). */
  vouch?(iatMs: number, nowMs?: number): void;
  events?(sinceMs?: number): unknown[];
}

export interface SyncServiceDeps {
  store: Store;
  clock: Clock;
  key: SigningKey;
  info: ServerInfo;
  timeGuard?: TimeGuardLike | undefined;
  /** The audit log as the faces read it (domain/audit.ts): exports carry its rows and head. */
  audit: AuditService;
  /** Called after an import commits changes (waiting lease requests get the answer of now). */
  onEntitlementsChanged?: (() => void) | undefined;
}

/** What import and export work with: the service's dependencies (sync storage is `store.sync`). */
export type SyncDeps = SyncServiceDeps;

/** BPSYNC/1 for one server: import, export, status. */
export function createSyncService(opts: SyncServiceDeps) {
  const deps: SyncDeps = opts;
  const { store, info } = deps;
  // Made now, outside any transaction, rather than inside the first import's or export's.
  const repo = store.sync;
  // One import at a time on this connection: an import prepares over many turns of the event loop
  // and keeps its seen-set in the connection's TEMP table. (Memory stays that of one bundle, too.)
  let importing: Promise<unknown> = Promise.resolve();
  function inTurn<T>(work: () => Promise<T>): Promise<T> {
    const mine = importing.then(work, work);
    // Whatever an import did (or a refused one left), entitlements may differ: wake the waiters.
    mine.then(
      () => opts.onEntitlementsChanged?.(),
      () => {},
    );
    importing = mine.catch(() => {});
    return mine;
  }

  return {
    /**
     * Imports a bundle file: every check in order, with `now` fixed once, every record prepared
     * without the write lock, then one short transaction that writes only the changes (waiting for
     * another process's lock on timers, up to a deadline: then `busy`). A refusal throws
     * bundle_rejected (details.rule) and is audited unless it is a dry run.
     */
    importFile(file: string, o: ImportOptions): Promise<ImportResult> {
      return inTurn(() => importBundle(deps, file, o));
    },

    /**
     * Imports a bundle sent as a request body: streamed to a temporary file with the size cap
     * enforced while writing, then imported like a file. The audit log names it by its sha256.
     */
    async importStream(
      body: ReadableStream<Uint8Array> | null,
      declaredLength: number | undefined,
      o: Omit<ImportOptions, 'name'>,
    ): Promise<ImportResult> {
      const dir = mkdtempSync(join(tmpdir(), 'bpls-upload-'));
      try {
        let received;
        try {
          received = await receiveToFile(body, declaredLength, join(dir, 'bundle.bpsync'));
        } catch (err) {
          if (ruleOf(err) !== undefined && !o.dryRun)
            auditRejection(
              deps,
              err as AppError,
              { ...o, name: 'upload' },
              deps.clock.now(),
              undefined,
              'upload',
            );
          throw err;
        }
        return await inTurn(() =>
          importBundle(deps, received.file, { ...o, name: `upload:sha256:${received.sha256}` }),
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },

    /**
     * Finishes a big import left half-applied by a crash or a storage error (see import-steps.ts,
     * ApplyingMarker), if there is one; `serve` calls it at start. Resolves true when it finished one.
     */
    finishInterruptedImport(): Promise<boolean> {
      return inTurn(async () => {
        if (applyingNow(deps) === null) return false;
        await resumePending(deps, undefined);
        return true;
      });
    },

    /** Writes the next export bundle into a folder. */
    exportTo(o: ExportOptions): ExportResult {
      return exportBundle(deps, o);
    },

    status() {
      const li = repo.lastImport();
      const le = repo.lastExport();
      const manual = store.state.get('allow_manual_provisioning');
      const ttl = store.state.get('default_lease_ttl_seconds');
      return {
        server_id: info.server_id,
        public_key: info.public_key,
        kid: info.kid,
        vendor_keys: pinnedVendorKeys(store).map((k) => ({
          kid: k.kid,
          public_key: k.publicPaserk,
        })),
        allow_manual_provisioning: manual !== 'false',
        default_lease_ttl_seconds: ttl === undefined ? null : Number(ttl),
        last_import: li
          ? {
              seq: li.seq,
              manifest_sha256: li.manifest_sha256,
              iss: li.iss,
              kid: li.kid,
              iat: toIso(li.iat),
              exp: toIso(li.exp),
              records: li.records,
              imported_at: toIso(li.imported_at),
              acked_export_seq: li.ack,
            }
          : null,
        last_export: le
          ? {
              seq: le.seq,
              manifest_sha256: le.manifest_sha256,
              created_at: toIso(le.created_at),
              period_start: toIso(le.period_start),
              audit_seq: le.audit_seq,
              records: le.records,
              file: le.file,
            }
          : null,
        bundle_entitlements: repo.bundleCounts(),
        // A big bundle applied in steps and not finished yet (an interrupted one is finished by
        // the next import or by `serve` at start).
        applying: applyingNow(deps),
        permanent_revocations: repo.revocationCount(),
      };
    },
  };
}

export type SyncService = ReturnType<typeof createSyncService>;
