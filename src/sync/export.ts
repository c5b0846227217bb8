/**
 * Export bundles (server → vendor): usage since the last export, seats, quota use (installations
 * per entitlement and quota), manual entitlements, the
 * audit rows since the last export with the chain head, clock events; signed by the server key.
 */
import { closeSync, openSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { toIso } from '../clock.ts';
import { PayloadWriter, assembleBundle, manifestHash } from './format.ts';
import { EXPORT_TYP, signManifest, type Manifest } from './manifest.ts';
import type { SyncDeps } from './service.ts';
import { makeDirs } from '../fs-dirs.ts';

/** Exports are records of the past; `exp` only bounds how long a vendor should accept one late. */
const EXPORT_VALIDITY_MS = 365 * 86_400_000;
/** The audience of exports: the vendor's cloud. */
export const EXPORT_AUDIENCE = 'bp-vendor';

export interface ExportOptions {
  /** The folder the bundle is written to (created when missing). */
  outDir: string;
  actor: string;
  /** Recorded in the export ledger; false for a temporary file (HTTP). */
  recordFile?: boolean;
}

export interface ExportResult {
  file: string;
  seq: number;
  manifest_sha256: string;
  records: number;
  bytes: number;
  period_start: string;
  period_end: string;
  /** Set when the export committed but its file kept its temporary name (`file` says which). */
  warning?: string;
}

export function exportFileName(serverId: string, seq: number): string {
  return `${serverId}-export-${String(seq).padStart(6, '0')}.bpsync`;
}

interface ClockEventLike {
  seq?: number;
  at?: number;
  kind?: string;
  hwm?: number;
  details?: unknown;
}

/**
 * Builds, signs and writes the next export. The ledger row and the audit row commit in one
 * transaction; the file is written and fsynced beside its final name first and renamed after the
 * commit, so the folder never shows an export the database does not know.
 */
export function exportBundle(deps: SyncDeps, opts: ExportOptions): ExportResult {
  const { store, info, key } = deps;
  const now = deps.clock.now();
  // 0700 when made here; an existing folder keeps its mode, the files in it are 0600 regardless.
  makeDirs(opts.outDir, 0o700);
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const payloadFile = join(opts.outDir, `.export-${tag}.payload`);
  let partFile: string | undefined;
  try {
    const r = store.tx(() => {
      const last = deps.store.sync.lastExport();
      const seq = (last?.seq ?? 0) + 1;
      const head = deps.audit.head();
      const eventTo = deps.store.sync.eventHead();
      const created = Date.parse(info.created_at);
      const periodStart = last?.created_at ?? (Number.isFinite(created) ? created : 0);
      const clockEvents = ((deps.timeGuard?.events?.(0) ?? []) as ClockEventLike[]).filter(
        (e) => (e.seq ?? 0) > (last?.clock_seq ?? 0),
      );

      const fd = openSync(payloadFile, 'wx', 0o600);
      let payload: Manifest['payload'];
      try {
        const w = new PayloadWriter(fd);
        // The first export enrols the server: the vendor learns its key from it.
        if (!last)
          w.write({
            op: 'enrolment',
            server_id: info.server_id,
            public_key: info.public_key,
            kid: info.kid,
          });
        for (const u of deps.store.sync.usage(last?.event_seq ?? 0, eventTo)) {
          w.write({
            op: 'usage',
            entitlement_id: u.entitlement_id,
            period_start: toIso(periodStart),
            period_end: toIso(now),
            peak_concurrent: Math.max(u.peak_in, u.carried),
            grants: u.grants,
            denials: u.denials,
            unique_subjects: u.unique_subjects,
            // Only when there were some: an export without floating extras reads as before.
            ...(u.overdraft_grants > 0 ? { overdraft_grants: u.overdraft_grants } : {}),
            ...(u.borrows > 0 ? { borrows: u.borrows } : {}),
          });
        }
        for (const s of deps.store.sync.seats()) {
          w.write({
            op: 'seat',
            seat_id: s.id,
            entitlement_id: s.entitlement_id,
            subject_type: s.subject_type,
            subject_id: s.subject_id,
            assigned_at: toIso(s.assigned_at),
            assigned_by: s.assigned_by,
          });
        }
        // Installations now, per entitlement and quota (a unit count, like the seats above).
        for (const [entitlementId, counts] of deps.store.installations.allCounts()) {
          const quotas = deps.store.entitlements.get(entitlementId)?.policy.quotas ?? {};
          for (const [quota, used] of Object.entries(counts).sort(([a], [b]) => (a < b ? -1 : 1)))
            w.write({
              op: 'quota_usage',
              entitlement_id: entitlementId,
              quota,
              used,
              limit: Object.hasOwn(quotas, quota) ? quotas[quota]! : null,
            });
        }
        for (const e of deps.store.sync.manualEntitlements()) {
          w.write({
            op: 'manual_entitlement',
            entitlement_id: e.id,
            tenant_id: e.tenant_id,
            product_id: e.product_id,
            policy_json: JSON.parse(e.policy_json) as unknown,
            starts_at: toIso(e.starts_at),
            ends_at: toIso(e.ends_at),
            status: e.status,
            external_id: e.external_id,
            created_at: toIso(e.created_at),
            updated_at: toIso(e.updated_at),
          });
        }
        // Audit rows exactly as stored, so the vendor can recompute every hash of the chain.
        for (const a of deps.audit.rowsBetween(last?.audit_seq ?? 0, head.seq))
          w.write({ op: 'audit', ...a });
        w.write({ op: 'audit_head', seq: head.seq, hash: head.hash });
        for (const c of clockEvents) {
          w.write({
            op: 'clock_event',
            seq: c.seq ?? null,
            at: typeof c.at === 'number' ? toIso(c.at) : null,
            kind: c.kind ?? null,
            hwm: typeof c.hwm === 'number' ? toIso(c.hwm) : null,
            details: c.details ?? {},
          });
        }
        payload = w.finish();
      } finally {
        closeSync(fd);
      }

      const manifest: Manifest = {
        typ: EXPORT_TYP,
        iss: info.server_id,
        aud: EXPORT_AUDIENCE,
        server_id: info.server_id,
        seq,
        prev: last?.manifest_sha256 ?? null,
        iat: now,
        exp: now + EXPORT_VALIDITY_MS,
        payload,
        ack: deps.store.sync.lastImport()?.seq ?? null,
      };
      // Signed inside the transaction on purpose: the ledger row must hold this manifest's hash.
      const token = signManifest(key, manifest, 'export');
      const name = exportFileName(info.server_id, seq);
      const file = join(opts.outDir, name);
      partFile = join(opts.outDir, `.${name}.${tag}.part`);
      // 0600 like every file the server writes: an export holds seat subjects and the audit rows.
      const out = openSync(partFile, 'wx', 0o600);
      try {
        assembleBundle(out, token, payloadFile);
      } finally {
        closeSync(out);
      }
      const hash = manifestHash(token);
      const lastClock = clockEvents.reduce(
        (mx, c) => Math.max(mx, c.seq ?? 0),
        last?.clock_seq ?? 0,
      );
      deps.store.sync.recordExport({
        seq,
        manifest_sha256: hash,
        created_at: now,
        period_start: periodStart,
        audit_seq: head.seq,
        audit_hash: head.hash,
        event_seq: eventTo,
        clock_seq: lastClock,
        records: payload.records,
        file: opts.recordFile === false ? null : file,
      });
      store.audit.append({
        at: now,
        actor: opts.actor,
        action: 'sync.export',
        targetType: 'sync_bundle',
        targetId: String(seq),
        details: {
          seq,
          manifest_sha256: hash,
          records: payload.records,
          audit_seq: head.seq,
          period_start: toIso(periodStart),
          period_end: toIso(now),
        },
      });
      const bytes = Buffer.byteLength(`BPSYNC/1\n${token}\n`) + payload.len;
      return {
        file,
        seq,
        manifest_sha256: hash,
        records: payload.records,
        bytes,
        period_start: toIso(periodStart),
        period_end: toIso(now),
      };
    });
    // Committed: from here on the part file is the export, kept even if the rename fails; and the
    // answer is success, since the export exists (a failure here would be an error after a
    // committed change, and exporting again would skip this one's records).
    const part = partFile!;
    partFile = undefined;
    try {
      renameSync(part, r.file);
    } catch (err) {
      return {
        ...r,
        file: part,
        warning: `export ${r.seq} is committed but could not be renamed from ${part} to ${r.file} (${(err as NodeJS.ErrnoException).code ?? String(err)}); rename it by hand`,
      };
    }
    return r;
  } finally {
    rmSync(payloadFile, { force: true });
    if (partFile !== undefined) rmSync(partFile, { force: true });
  }
}
