/**
 * The preparing pass of an import (sync-bundles/README.md section 4, check 13, and the diff that
 * `--dry-run` reports): every record of the payload parsed, checked and compared with the current
 * rows WITHOUT the write lock, giving the event loop back every few ms, into a Plan of only the
 * real changes (one byte per record). The apply reads the records again from the file, in order,
 * through walker; entitlementOf is how a record becomes a row, for both passes.
 */
import { counted } from '../plural.ts';
import type { Entitlement } from '../domain/types.ts';
import { hasNamedSeats } from '../domain/types.ts';
import {
  changeRefusal,
  cutsSeats,
  movesAccount,
  revisionRefusal,
} from '../domain/entitlement-rules.ts';
import { LineReader, rejected } from './format.ts';
import { parseImportRecord, parseLine, parseSetting, type EntitlementRecord } from './records.ts';
import { parseVendorKeys, pinnedVendorKeys } from './trust.ts';
import type { Verified } from './import-checks.ts';
import type { ImportDiff, SeatCut } from './import.ts';
import type { SyncDeps } from './service.ts';

/** Lists in a result (dry-run diff, audit details) stop at this many ids; the counts are exact. */
export const DIFF_LIST_LIMIT = 1000;
/** The preparing pass gives the event loop back after this long (ms): the server keeps answering. */
const PREPARE_SLICE_MS = 8;
/** How often the preparing pass looks at the clock, in records. */
const CLOCK_EVERY = 16;

/** What the apply does with a record (Plan.writes, by record number - 1). */
export const W_NONE = 0;
export const W_INSERT = 1;
export const W_UPDATE = 2;
export const W_REVOKE = 3;
export const W_SETTING = 4;

/** A setting to write, parsed by prepare (few per bundle, kept whole). */
export type SettingOp =
  | { k: 'vendor_keys'; keys: ReturnType<typeof parseVendorKeys> }
  | { k: 'state'; key: string; value: string };

/** One write of an import, in file order, parsed again from the file just before it is applied. */
export type Write =
  | { k: typeof W_INSERT | typeof W_UPDATE; rec: EntitlementRecord }
  | { k: typeof W_REVOKE; id: string }
  | { k: typeof W_SETTING; op: SettingOp };

/** Everything an import will write, worked out without the write lock. */
export interface Plan {
  /** The entitlement epoch and last import the plan was made against; the apply checks them. */
  epoch: bigint | number;
  lastImport: string | null;
  /**
   * Per record, what the apply writes (W_*): a byte each, so a million-record plan costs 1 MB
   * and the records themselves are read again from the file (in order) as they are applied.
   */
  writes: Uint8Array;
  /** How many records the apply writes. */
  writeCount: number;
  settings: Map<number, SettingOp>;
  counts: {
    added: number;
    changed: number;
    revoked: number;
    unchanged: number;
    suspended: number;
    ignored: number;
  };
  diff: ImportDiff;
  seatsCut: SeatCut[];
}

/** The second pass over the payload, without the write lock: every record checked, the writes listed. */
export async function prepare(deps: SyncDeps, fd: number, v: Verified, now: number): Promise<Plan> {
  const { store } = deps;
  const repo = store.sync;
  const m = v.manifest;
  const plan: Plan = {
    epoch: store.entitlements.epoch(),
    lastImport: repo.lastImport()?.manifest_sha256 ?? null,
    writes: new Uint8Array(m.payload.records),
    writeCount: 0,
    settings: new Map(),
    counts: { added: 0, changed: 0, revoked: 0, unchanged: 0, suspended: 0, ignored: 0 },
    diff: {
      added: [],
      changed: [],
      revoked: [],
      suspended: [],
      ignored: [],
      settings: [],
      truncated: false,
    },
    seatsCut: [],
  };
  const { counts, diff, seatsCut } = plan;
  const plan_ = (n: number, k: number) => {
    plan.writes[n - 1] = k;
    plan.writeCount++;
  };
  const note = <T>(list: T[], item: T) => {
    if (list.length < DIFF_LIST_LIMIT) list.push(item);
    else diff.truncated = true;
  };
  const settingsSeen = new Set<string>();
  // Ids this bundle revokes: a later record naming one is ignored, as a revoked one is.
  const revokedHere = new Set<string>();

  const manualConflict = (id: string, n: number) =>
    rejected(
      'malformed',
      `record ${n}: ${id} is a manual entitlement on this server; a bundle may not take it over (the vendor must use another id)`,
      { record: n, entitlement_id: id },
    );

  function planEntitlement(rec: EntitlementRecord, n: number): void {
    const id = rec.entitlement_id;
    if (!repo.markSeen(id))
      throw rejected('malformed', `record ${n}: ${id} is listed twice`, {
        record: n,
        entitlement_id: id,
      });
    const existing = store.entitlements.get(id);
    const refusal = changeRefusal(existing, 'bundle', revokedHere.has(id) || repo.isRevoked(id));
    if (refusal === 'owned_by_customer') throw manualConflict(id, n);
    // Revoked is final: the record is skipped, and the import goes on.
    if (refusal === 'revoked_is_final') {
      counts.ignored++;
      note(diff.ignored, id);
      return;
    }
    const next = entitlementOf(rec, existing, now);
    if (!existing) {
      plan_(n, W_INSERT);
      counts.added++;
      note(diff.added, id);
      return;
    }
    if (movesAccount(existing, next)) {
      throw rejected(
        'malformed',
        `record ${n}: ${id} belongs to tenant ${existing.tenantId} and product ${existing.productId}; a bundle may not move it (use a new id)`,
        { record: n, entitlement_id: id },
      );
    }
    const fields: string[] = [];
    if (JSON.stringify(existing.policy) !== JSON.stringify(next.policy)) fields.push('policy_json');
    if (existing.startsAt !== next.startsAt) fields.push('starts_at');
    if (existing.endsAt !== next.endsAt) fields.push('ends_at');
    const revision = revisionRefusal(existing.rev, rec.rev, fields.length > 0);
    if (revision === 'rollback') {
      throw rejected(
        'rollback',
        `record ${n}: ${id} has rev ${rec.rev}, older than the rev ${existing.rev} this server holds`,
        { record: n, entitlement_id: id, rev: rec.rev, held_rev: existing.rev },
      );
    }
    if (revision === 'same_rev') {
      throw rejected(
        'malformed',
        `record ${n}: ${id} rev ${rec.rev} differs from the rev ${rec.rev} this server holds; the vendor must raise rev with every change`,
        { record: n, entitlement_id: id, fields },
      );
    }
    if (existing.rev !== rec.rev) fields.push('rev');
    if (existing.status !== 'active') fields.push('status');
    if (fields.length === 0) {
      counts.unchanged++;
      return;
    }
    plan_(n, W_UPDATE);
    counts.changed++;
    note(diff.changed, { entitlement_id: id, fields });
    const max = next.policy.max_seats;
    if (max !== undefined) {
      const inUse = hasNamedSeats(next.policy.type)
        ? store.leases.counters(id).seatsAssigned
        : store.leases.liveCount(id, now);
      if (cutsSeats(next.policy, inUse))
        note(seatsCut, { entitlement_id: id, max_seats: max, in_use: inUse });
    }
  }

  function planRevoke(id: string, n: number): void {
    const existing = store.entitlements.get(id);
    if (changeRefusal(existing, 'bundle') === 'owned_by_customer') throw manualConflict(id, n);
    // Revoked earlier in this bundle: nothing more to do or count.
    if (revokedHere.has(id)) return;
    revokedHere.add(id);
    plan_(n, W_REVOKE);
    // Counted when it takes something in force (stored, or added earlier in this bundle) or an id
    // never revoked before; not for one revoked already.
    if (existing ? existing.status === 'revoked' : repo.isRevoked(id)) return;
    counts.revoked++;
    note(diff.revoked, id);
  }

  function planSetting(rawKey: string, rawValue: unknown, n: number): void {
    if (settingsSeen.has(rawKey))
      throw rejected('malformed', `record ${n}: setting ${rawKey} is given twice`, { record: n });
    settingsSeen.add(rawKey);
    const { key, value } = parseSetting(rawKey, rawValue, `record ${n}`);
    let from: unknown;
    let to: unknown;
    if (key === 'vendor_keys') {
      const keys = parseVendorKeys(value as string[], (msg) =>
        rejected('malformed', `record ${n}: ${msg}`, { record: n }),
      );
      const current = pinnedVendorKeys(store);
      from = current.map((k) => k.publicPaserk);
      to = keys.map((k) => k.publicPaserk);
      if (
        JSON.stringify([...(from as string[])].sort()) ===
        JSON.stringify([...(to as string[])].sort())
      )
        return;
      plan.settings.set(n, { k: 'vendor_keys', keys });
      plan_(n, W_SETTING);
    } else {
      const stored = store.state.get(key);
      from =
        stored === undefined
          ? null
          : key === 'allow_manual_provisioning'
            ? stored === 'true'
            : Number(stored);
      to = value;
      if (from === to) return;
      plan.settings.set(n, { k: 'state', key, value: String(value) });
      plan_(n, W_SETTING);
    }
    diff.settings.push({ key, from, to });
  }

  // Reads and the seen-set (TEMP) writes of one slice share a deferred transaction: one snapshot,
  // no write lock on the database. The slice ends before the event loop is given back, so the
  // connection's other users (group commit, admin writes) never find a transaction open.
  repo.beginSnapshot();
  const reader = new LineReader(fd, v.payloadOffset, v.fileSize);
  let n = 0;
  let sliceStart = performance.now();
  repo.beginRead();
  try {
    for (let line = reader.next(); line !== null; line = reader.next()) {
      n++;
      if (n > m.payload.records)
        throw rejected(
          'malformed',
          `the payload holds more records than the ${m.payload.records} the manifest says`,
        );
      const rec = parseImportRecord(parseLine(line, n), n);
      if (rec.op === 'entitlement') planEntitlement(rec, n);
      else if (rec.op === 'revoke') planRevoke(rec.entitlement_id, n);
      else planSetting(rec.key, rec.value, n);
      if (n % CLOCK_EVERY === 0 && performance.now() - sliceStart > PREPARE_SLICE_MS) {
        repo.endRead();
        await new Promise((r) => setImmediate(r));
        repo.beginRead();
        sliceStart = performance.now();
      }
    }
    if (n !== m.payload.records)
      throw rejected(
        'malformed',
        `the payload holds ${counted(n, 'record')}, the manifest says ${m.payload.records}`,
      );
    // The file is read twice; a change between the reads must not slip through.
    if (reader.hash.digest('hex') !== m.payload.sha256)
      throw rejected('malformed', 'the file changed while it was read');
    // A snapshot: bundle entitlements it no longer lists will be suspended (never deleted: leases
    // and history refer to them), and come back when a later bundle lists them again.
    for (const id of repo.unseen()) {
      counts.suspended++;
      note(diff.suspended, id);
    }
  } finally {
    repo.endRead();
  }
  return plan;
}

/**
 * Reads the payload again from the start and yields the planned writes in file order, each record
 * parsed again (it passed every check in prepare). `intact()` after the end: the bytes read still
 * have the manifest's sha256.
 */
export function walker(
  fd: number,
  v: Verified,
  plan: Plan,
): { next(): Write | null; intact(): boolean } {
  const reader = new LineReader(fd, v.payloadOffset, v.fileSize);
  let n = 0;
  return {
    next(): Write | null {
      for (let line = reader.next(); line !== null; line = reader.next()) {
        n++;
        const k = plan.writes[n - 1] ?? W_NONE;
        if (k === W_NONE) continue;
        if (k === W_SETTING) return { k, op: plan.settings.get(n)! };
        const rec = parseImportRecord(parseLine(line, n), n);
        if (k === W_REVOKE && rec.op === 'revoke') return { k, id: rec.entitlement_id };
        if ((k === W_INSERT || k === W_UPDATE) && rec.op === 'entitlement') return { k, rec };
        throw rejected('malformed', 'the file changed while it was read');
      }
      return null;
    },
    intact: () => reader.hash.digest('hex') === v.manifest.payload.sha256,
  };
}

/** An entitlement as a bundle record makes it, over the stored one if any. */
export function entitlementOf(
  rec: EntitlementRecord,
  existing: Entitlement | undefined,
  now: number,
): Entitlement {
  return {
    id: rec.entitlement_id,
    tenantId: rec.tenant_id,
    productId: rec.product_id,
    policy: rec.policy_json,
    startsAt: rec.starts_at,
    endsAt: rec.ends_at,
    status: 'active',
    source: 'bundle',
    externalId: existing?.externalId ?? null,
    rev: rec.rev,
    createdAt: existing?.createdAt ?? now,
    updatedAt: now,
  };
}
