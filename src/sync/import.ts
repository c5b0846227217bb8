/**
 * Import of vendor bundles (vendor → server): every check of DESIGN.md in its order, then one
 * IMMEDIATE transaction that applies the snapshot, or nothing.
 */
import { closeSync, openSync } from 'node:fs';
import { basename } from 'node:path';
import { AppError } from '../errors.ts';
import { toIso } from '../clock.ts';
import type { Entitlement } from '../domain/types.ts';
import { graceDays } from '../domain/types.ts';
import type { VerifyKey } from '../tokens/keys.ts';
import { LineReader, hashFileRegion, manifestHash, readHeader, rejected, ruleOf } from './format.ts';
import { IMPORT_TYP, parseManifest, verifyManifest, type Manifest } from './manifest.ts';
import { parseImportRecord, parseLine, parseSetting, type EntitlementRecord } from './records.ts';
import { parseVendorKeys, pinnedVendorKeys, setVendorKeys } from './trust.ts';
import type { SyncDeps } from './service.ts';

/** How far a bundle's `iat` may be ahead of our clock before the clock is called unsynced. */
export const CLOCK_SKEW_MS = 5 * 60_000;
/** Lists in a result (dry-run diff, audit details) stop at this many ids; the counts are exact. */
export const DIFF_LIST_LIMIT = 1000;
const AUDIT_LIST_LIMIT = 100;

export interface ImportOptions {
  /** Check everything and report the diff; change nothing. */
  dryRun?: boolean;
  /** Who imports, for the audit log (`cli:alice`, `token:tok_…`, `sync-dir`). */
  actor: string;
  /** What the audit log calls the bundle: its file name, or the sha256 of an uploaded body. */
  name?: string;
}

export interface SeatCut {
  entitlement_id: string;
  max_seats: number;
  in_use: number;
}

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

/** Thrown at the end of a dry run to roll its transaction back, carrying the result out. */
class DryRunDone extends Error {
  readonly result: ImportResult;

  constructor(result: ImportResult) {
    super('dry run');
    this.result = result;
  }
}

interface Verified {
  manifest: Manifest;
  hash: string;
  kid: string;
  payloadOffset: number;
  fileSize: number;
}

/** Imports one bundle file. Refusals throw bundle_rejected and, unless a dry run, are audited. */
export async function importBundle(deps: SyncDeps, file: string, opts: ImportOptions): Promise<ImportResult> {
  const now = deps.clock.now();
  let seq: number | undefined;
  try {
    const fd = openSync(file, 'r');
    try {
      const v = verifyHeader(deps, fd);
      seq = v.manifest.seq;
      if (orderOf(deps, v) === 'same') return unchangedResult(v);
      checkTime(v.manifest, now);
      await checkPayload(file, v);
      return applyInTransaction(deps, fd, v, now, opts);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if (err instanceof DryRunDone) return err.result;
    const rule = ruleOf(err);
    if (rule !== undefined && !opts.dryRun) auditRejection(deps, err as AppError, opts, now, seq, file);
    throw err;
  }
}

/** Magic, strict PASETO, a pinned key, the signature, typ, claims, server. */
function verifyHeader(deps: SyncDeps, fd: number): Verified {
  const header = readHeader(fd);
  const keys: VerifyKey[] = pinnedVendorKeys(deps.store);
  let verified;
  try {
    verified = verifyManifest(keys, header.manifest, 'import', deps.info.server_id);
  } catch (err) {
    // The token's form is checked before its key, even when there is no key to find.
    if (keys.length === 0 && ruleOf(err) === 'unknown_key') {
      throw rejected('unknown_key', 'no vendor key is pinned on this server, so no bundle can be trusted', {}, 'pin the vendor key: bp-license-server init --vendor-key k4.public.…');
    }
    throw err;
  }
  const { claims, kid } = verified;
  if (claims.typ !== IMPORT_TYP) {
    throw rejected('malformed', `the manifest typ is ${JSON.stringify(claims.typ)?.slice(0, 40)}, not "${IMPORT_TYP}"`);
  }
  const manifest = parseManifest(claims);
  if (manifest.server_id !== deps.info.server_id || manifest.aud !== deps.info.server_id) {
    throw rejected('wrong_server', `the bundle is meant for server ${manifest.server_id}, not this one (${deps.info.server_id})`, { bundle_server_id: manifest.server_id, server_id: deps.info.server_id });
  }
  return { manifest, hash: manifestHash(header.manifest), kid, payloadOffset: header.payloadOffset, fileSize: header.fileSize };
}

/** seq against the last import: higher is new; equal with the same manifest is this bundle again. */
function orderOf(deps: SyncDeps, v: Verified): 'new' | 'same' {
  const last = deps.repo.lastImport();
  const m = v.manifest;
  if (!last) return 'new';
  const details = { seq: m.seq, last_seq: last.seq };
  if (m.seq < last.seq) throw rejected('replay', `bundle seq ${m.seq} is older than the last imported bundle (seq ${last.seq}); importing it would undo newer changes`, details);
  if (m.seq === last.seq) {
    if (v.hash === last.manifest_sha256) return 'same';
    throw rejected('fork', `a different bundle with seq ${m.seq} was imported already (manifest ${last.manifest_sha256.slice(0, 16)}…); two bundles may never share a seq`, details);
  }
  if (m.seq === last.seq + 1 && m.prev !== last.manifest_sha256) {
    throw rejected('fork', `bundle seq ${m.seq} does not follow the bundle imported as seq ${last.seq}: its prev is not that bundle's manifest hash`, { ...details, prev: m.prev, expected_prev: last.manifest_sha256 });
  }
  if (m.iat < last.iat) {
    throw rejected('rollback', `bundle seq ${m.seq} was signed at ${toIso(m.iat)}, before the last imported bundle (seq ${last.seq}, signed ${toIso(last.iat)}): an old snapshot signed again`, details);
  }
  return 'new';
}

function checkTime(m: Manifest, now: number): void {
  if (m.iat > now + CLOCK_SKEW_MS) {
    throw rejected(
      'clock_unsynced',
      `the bundle was signed at ${toIso(m.iat)}, more than 5 minutes ahead of this server's clock (${toIso(now)})`,
      { iat: toIso(m.iat), now: toIso(now) },
      "set this server's clock right (it is behind the vendor's), then import again",
    );
  }
  if (m.exp <= now) {
    throw rejected('expired', `the bundle expired at ${toIso(m.exp)} (now ${toIso(now)})`, { exp: toIso(m.exp), now: toIso(now) }, 'ask the vendor for a fresh bundle');
  }
}

/** The first, streaming pass: the payload has exactly the length and hash the manifest signs. */
async function checkPayload(file: string, v: Verified): Promise<void> {
  const want = v.manifest.payload;
  const have = v.fileSize - v.payloadOffset;
  if (have !== want.len) {
    throw rejected('malformed', `the payload is ${have} bytes, the manifest says ${want.len} (the file is truncated, extended or altered)`, { payload_bytes: have, manifest_len: want.len });
  }
  const h = await hashFileRegion(file, v.payloadOffset);
  if (h.bytes !== want.len) throw rejected('malformed', 'the file changed while it was read');
  if (h.sha256 !== want.sha256) throw rejected('malformed', 'the payload does not match the sha256 in the manifest (the file was altered)');
}

function unchangedResult(v: Verified): ImportResult {
  return { status: 'unchanged', seq: v.manifest.seq, manifest_sha256: v.hash, added: 0, changed: 0, revoked: 0, unchanged: 0, suspended: 0, ignored: 0, settings: [], seats_cut: [] };
}

const NAMED = new Set(['per_user', 'per_machine']);

/** The second pass, inside one IMMEDIATE transaction: every record checked and applied, or none. */
function applyInTransaction(deps: SyncDeps, fd: number, v: Verified, now: number, opts: ImportOptions): ImportResult {
  const { store } = deps;
  const m = v.manifest;
  const dryRun = opts.dryRun === true;
  return store.tx(() => {
    // Another process may have imported meanwhile: the order is checked again under the lock.
    if (orderOf(deps, v) === 'same') return unchangedResult(v);
    const diff: ImportDiff = { added: [], changed: [], revoked: [], suspended: [], ignored: [], settings: [], truncated: false };
    const counts = { added: 0, changed: 0, revoked: 0, unchanged: 0, suspended: 0, ignored: 0 };
    const seatsCut: SeatCut[] = [];
    const note = <T>(list: T[], item: T) => {
      if (list.length < DIFF_LIST_LIMIT) list.push(item);
      else diff.truncated = true;
    };
    const settingsSeen = new Set<string>();

    const manualConflict = (id: string, n: number) =>
      rejected('malformed', `record ${n}: ${id} is a manual entitlement on this server; a bundle may not take it over (the vendor must use another id)`, { record: n, entitlement_id: id });

    function applyEntitlement(rec: EntitlementRecord, n: number): void {
      const id = rec.entitlement_id;
      if (!deps.repo.markSeen(id)) throw rejected('malformed', `record ${n}: ${id} is listed twice`, { record: n, entitlement_id: id });
      const existing = store.entitlements.get(id);
      if (existing?.source === 'manual') throw manualConflict(id, n);
      if (existing?.status === 'revoked' || deps.repo.isRevoked(id)) {
        counts.ignored++;
        note(diff.ignored, id);
        return;
      }
      const next: Entitlement = {
        id,
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
      if (!existing) {
        store.entitlements.insert(next, graceDays(next.policy));
        counts.added++;
        note(diff.added, id);
        return;
      }
      if (existing.tenantId !== next.tenantId || existing.productId !== next.productId) {
        throw rejected('malformed', `record ${n}: ${id} belongs to tenant ${existing.tenantId} and product ${existing.productId}; a bundle may not move it (use a new id)`, { record: n, entitlement_id: id });
      }
      if (existing.rev !== null && rec.rev < existing.rev) {
        throw rejected('rollback', `record ${n}: ${id} has rev ${rec.rev}, older than the rev ${existing.rev} this server holds`, { record: n, entitlement_id: id, rev: rec.rev, held_rev: existing.rev });
      }
      const fields: string[] = [];
      if (JSON.stringify(existing.policy) !== JSON.stringify(next.policy)) fields.push('policy_json');
      if (existing.startsAt !== next.startsAt) fields.push('starts_at');
      if (existing.endsAt !== next.endsAt) fields.push('ends_at');
      if (fields.length > 0 && existing.rev === rec.rev) {
        throw rejected('malformed', `record ${n}: ${id} rev ${rec.rev} differs from the rev ${rec.rev} this server holds; the vendor must raise rev with every change`, { record: n, entitlement_id: id, fields });
      }
      if (existing.rev !== rec.rev) fields.push('rev');
      if (existing.status !== 'active') fields.push('status');
      if (fields.length === 0) {
        counts.unchanged++;
        return;
      }
      store.entitlements.update(next, graceDays(next.policy));
      counts.changed++;
      note(diff.changed, { entitlement_id: id, fields });
      const max = next.policy.max_seats;
      if (max !== undefined) {
        const inUse = NAMED.has(next.policy.type) ? store.leases.counters(id).seatsAssigned : store.leases.liveCount(id, now);
        if (inUse > max) note(seatsCut, { entitlement_id: id, max_seats: max, in_use: inUse });
      }
    }

    function applyRevoke(id: string, n: number): void {
      const existing = store.entitlements.get(id);
      if (existing?.source === 'manual') throw manualConflict(id, n);
      const newly = deps.repo.revoke(id, m.seq, now);
      if (existing && existing.status !== 'revoked') {
        store.entitlements.update({ ...existing, status: 'revoked', updatedAt: now }, graceDays(existing.policy));
      } else if (existing || !newly) {
        return;
      }
      counts.revoked++;
      note(diff.revoked, id);
    }

    function applySetting(rawKey: string, rawValue: unknown, n: number): void {
      if (settingsSeen.has(rawKey)) throw rejected('malformed', `record ${n}: setting ${rawKey} is given twice`, { record: n });
      settingsSeen.add(rawKey);
      const { key, value } = parseSetting(rawKey, rawValue, `record ${n}`);
      let from: unknown;
      let to: unknown;
      if (key === 'vendor_keys') {
        const keys = parseVendorKeys(value as string[], (msg) => rejected('malformed', `record ${n}: ${msg}`, { record: n }));
        const current = pinnedVendorKeys(store);
        from = current.map((k) => k.publicPaserk);
        to = keys.map((k) => k.publicPaserk);
        if (JSON.stringify([...(from as string[])].sort()) === JSON.stringify([...(to as string[])].sort())) return;
        setVendorKeys(store, keys);
      } else {
        const stored = store.state.get(key);
        from = stored === undefined ? null : key === 'allow_manual_provisioning' ? stored === 'true' : Number(stored);
        to = value;
        if (from === to) return;
        store.state.set(key, String(value));
      }
      diff.settings.push({ key, from, to });
    }

    deps.repo.beginSnapshot();
    const reader = new LineReader(fd, v.payloadOffset, v.fileSize);
    let n = 0;
    for (let line = reader.next(); line !== null; line = reader.next()) {
      n++;
      if (n > m.payload.records) throw rejected('malformed', `the payload holds more records than the ${m.payload.records} the manifest says`);
      const rec = parseImportRecord(parseLine(line, n), n);
      if (rec.op === 'entitlement') applyEntitlement(rec, n);
      else if (rec.op === 'revoke') applyRevoke(rec.entitlement_id, n);
      else applySetting(rec.key, rec.value, n);
    }
    if (n !== m.payload.records) throw rejected('malformed', `the payload holds ${n} records, the manifest says ${m.payload.records}`);
    // The file is read twice; a change between the reads must not slip through.
    if (reader.hash.digest('hex') !== m.payload.sha256) throw rejected('malformed', 'the file changed while it was read');

    // A snapshot: bundle entitlements it no longer lists are suspended (never deleted: leases and
    // history refer to them), and come back when a later bundle lists them again.
    for (const id of deps.repo.suspendUnseen(now)) {
      counts.suspended++;
      note(diff.suspended, id);
    }

    const result: ImportResult = { status: dryRun ? 'dry_run' : 'applied', seq: m.seq, manifest_sha256: v.hash, ...counts, settings: diff.settings.map((s) => s.key), seats_cut: seatsCut };
    if (dryRun) throw new DryRunDone({ ...result, dry_run: true, diff });

    deps.repo.recordImport({ seq: m.seq, manifest_sha256: v.hash, iss: m.iss, kid: v.kid, iat: m.iat, exp: m.exp, ack: m.ack, records: m.payload.records, imported_at: now, actor: opts.actor });
    const cap = <T>(list: T[]) => list.slice(0, AUDIT_LIST_LIMIT);
    store.audit.append({
      at: now,
      actor: opts.actor,
      action: 'sync.import',
      targetType: 'sync_bundle',
      targetId: String(m.seq),
      details: {
        seq: m.seq,
        manifest_sha256: v.hash,
        kid: v.kid,
        iss: m.iss,
        ...(opts.name !== undefined ? { file: opts.name } : {}),
        ...counts,
        settings: diff.settings,
        seats_cut: cap(seatsCut),
        ids: { added: cap(diff.added), changed: cap(diff.changed.map((c) => c.entitlement_id)), revoked: cap(diff.revoked), suspended: cap(diff.suspended), ignored: cap(diff.ignored) },
      },
    });
    // The vendor's signed time vouches for our clock (the time guard's high-water mark), judged at
    // the same `now` the iat was checked against; a clock_suspect episode it ends closes here.
    deps.timeGuard?.vouch?.(m.iat, now);
    return result;
  });
}

/** A refusal gets its own small transaction, after the failed one rolled back. */
export function auditRejection(deps: SyncDeps, err: AppError, opts: ImportOptions, now: number, seq: number | undefined, file: string): void {
  try {
    deps.store.tx(() =>
      deps.store.audit.append({
        at: now,
        actor: opts.actor,
        action: 'sync.import_rejected',
        targetType: 'sync_bundle',
        targetId: seq === undefined ? null : String(seq),
        details: { rule: err.details.rule, message: err.message, file: opts.name ?? basename(file), ...(seq !== undefined ? { seq } : {}) },
      }),
    );
  } catch {
    // The refusal itself is what the caller must see; a failure to audit it (a busy database) is not.
  }
}
