/**
 * Import of vendor bundles (vendor → server): every check of sync-bundles/README.md section 4, in
 * its order, every record checked and compared with the current rows WITHOUT the write lock
 * (giving the event loop back every few ms), then one short IMMEDIATE transaction that writes only
 * the real changes, or nothing.
 */
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { chmod, copyFile, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, join } from 'node:path';
import { AppError } from '../errors.ts';
import { toIso } from '../clock.ts';
import type { Entitlement } from '../domain/types.ts';
import { graceDays, hasNamedSeats } from '../domain/types.ts';
import {
  changeRefusal,
  cutsSeats,
  movesAccount,
  revisionRefusal,
} from '../domain/entitlement-rules.ts';
import type { VerifyKey } from '../tokens/keys.ts';
import {
  LineReader,
  hashFileRegion,
  manifestHash,
  readHeader,
  rejected,
  ruleOf,
} from './format.ts';
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
  /** Plans of more writes than this are applied in steps (default APPLY_IN_ONE_MAX; tests lower it). */
  applyInOneMax?: number;
  /** At most this many writes per step (default: as many as STEP_MS allow; tests make steps small). */
  stepOps?: number;
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

interface Verified {
  manifest: Manifest;
  hash: string;
  kid: string;
  payloadOffset: number;
  fileSize: number;
}

/** Imports one bundle file. Refusals throw bundle_rejected and, unless a dry run, are audited. */
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
      throw rejected(
        'unknown_key',
        'no vendor key is pinned on this server, so no bundle can be trusted',
        {},
        'pin the vendor key: bp-license-server init --vendor-key k4.public.…',
      );
    }
    throw err;
  }
  const { claims, kid } = verified;
  if (claims.typ !== IMPORT_TYP) {
    throw rejected(
      'malformed',
      `the manifest typ is ${JSON.stringify(claims.typ)?.slice(0, 40)}, not "${IMPORT_TYP}"`,
    );
  }
  const manifest = parseManifest(claims);
  if (manifest.server_id !== deps.info.server_id || manifest.aud !== deps.info.server_id) {
    throw rejected(
      'wrong_server',
      `the bundle is meant for server ${manifest.server_id}, not this one (${deps.info.server_id})`,
      { bundle_server_id: manifest.server_id, server_id: deps.info.server_id },
    );
  }
  return {
    manifest,
    hash: manifestHash(header.manifest),
    kid,
    payloadOffset: header.payloadOffset,
    fileSize: header.fileSize,
  };
}

/** seq against the last import: higher is new; equal with the same manifest is this bundle again. */
function orderOf(deps: SyncDeps, v: Verified): 'new' | 'same' {
  const last = deps.store.sync.lastImport();
  const m = v.manifest;
  if (!last) return 'new';
  const details = { seq: m.seq, last_seq: last.seq };
  if (m.seq < last.seq)
    throw rejected(
      'replay',
      `bundle seq ${m.seq} is older than the last imported bundle (seq ${last.seq}); importing it would undo newer changes`,
      details,
    );
  if (m.seq === last.seq) {
    if (v.hash === last.manifest_sha256) return 'same';
    throw rejected(
      'fork',
      `a different bundle with seq ${m.seq} was imported already (manifest ${last.manifest_sha256.slice(0, 16)}…); two bundles may never share a seq`,
      details,
    );
  }
  if (m.seq === last.seq + 1 && m.prev !== last.manifest_sha256) {
    throw rejected(
      'fork',
      `bundle seq ${m.seq} does not follow the bundle imported as seq ${last.seq}: its prev is not that bundle's manifest hash`,
      { ...details, prev: m.prev, expected_prev: last.manifest_sha256 },
    );
  }
  if (m.iat < last.iat) {
    throw rejected(
      'rollback',
      `bundle seq ${m.seq} was signed at ${toIso(m.iat)}, before the last imported bundle (seq ${last.seq}, signed ${toIso(last.iat)}): an old snapshot signed again`,
      details,
    );
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
    throw rejected(
      'expired',
      `the bundle expired at ${toIso(m.exp)} (now ${toIso(now)})`,
      { exp: toIso(m.exp), now: toIso(now) },
      'ask the vendor for a fresh bundle',
    );
  }
}

/** The first, streaming pass: the payload has exactly the length and hash the manifest signs. */
async function checkPayload(file: string, v: Verified): Promise<void> {
  const want = v.manifest.payload;
  const have = v.fileSize - v.payloadOffset;
  if (have !== want.len) {
    throw rejected(
      'malformed',
      `the payload is ${have} bytes, the manifest says ${want.len} (the file is truncated, extended or altered)`,
      { payload_bytes: have, manifest_len: want.len },
    );
  }
  const h = await hashFileRegion(file, v.payloadOffset);
  if (h.bytes !== want.len) throw rejected('malformed', 'the file changed while it was read');
  if (h.sha256 !== want.sha256)
    throw rejected(
      'malformed',
      'the payload does not match the sha256 in the manifest (the file was altered)',
    );
}

function unchangedResult(v: Verified): ImportResult {
  return {
    status: 'unchanged',
    seq: v.manifest.seq,
    manifest_sha256: v.hash,
    added: 0,
    changed: 0,
    revoked: 0,
    unchanged: 0,
    suspended: 0,
    ignored: 0,
    settings: [],
    seats_cut: [],
  };
}

/** The preparing pass gives the event loop back after this long (ms): the server keeps answering. */
const PREPARE_SLICE_MS = 8;
/** How often the preparing pass looks at the clock, in records. */
const CLOCK_EVERY = 16;
/** Prepared plans thrown away because another writer changed entitlements before the apply. */
const MAX_PREPARES = 3;
/**
 * A plan of more writes than this is applied in steps (one short transaction each) instead of one
 * transaction: 100,000 new entitlements take ~2 s of writing, far too long to hold the lock.
 */
export const APPLY_IN_ONE_MAX = 2000;
/**
 * One step of a stepwise apply writes for about this long (ms), then commits and lets others in:
 * a client's write waits at most about a step. Inside the serving process (inbox, HTTP; its
 * connection has the short busy timeout) the step also holds the event loop, so it is shorter.
 */
const STEP_MS = 25;
const STEP_MS_IN_SERVER = 10;
/**
 * The pause between steps (ms): longer than the server's poll for a busy lock (every 2 ms, see
 * busy.ts), so a write waiting in another process gets the lock between two steps.
 */
const STEP_PAUSE_MS = 3;
/** The server_state key of the import being applied in steps (see ApplyingMarker). */
const APPLYING_KEY = 'sync_import_applying';
/** Folder beside the database holding the copy of the bundle being applied in steps. */
const APPLYING_DIR = 'sync-applying';

/**
 * A bundle accepted (its seq recorded, every check passed) and being applied in steps. Written in
 * the transaction that records the seq; removed in the one that writes the audit row. While it is
 * there, the next import, `serve` at start, or this bundle given again finishes the apply from the
 * copy it names, so the end state is the whole bundle ("eventually all").
 */
interface ApplyingMarker {
  manifest: Manifest;
  hash: string;
  kid: string;
  /** The copy's file name in APPLYING_DIR. */
  file: string;
  actor: string;
  name?: string;
  /** The import's `now`, fixed once: every step writes with it. */
  now: number;
}

/** What the apply does with a record (Plan.writes, by record number - 1). */
const W_NONE = 0;
const W_INSERT = 1;
const W_UPDATE = 2;
const W_REVOKE = 3;
const W_SETTING = 4;

/** A setting to write, parsed by prepare (few per bundle, kept whole). */
type SettingOp =
  | { k: 'vendor_keys'; keys: ReturnType<typeof parseVendorKeys> }
  | { k: 'state'; key: string; value: string };

/** One write of an import, in file order, parsed again from the file just before it is applied. */
type Write =
  | { k: typeof W_INSERT | typeof W_UPDATE; rec: EntitlementRecord }
  | { k: typeof W_REVOKE; id: string }
  | { k: typeof W_SETTING; op: SettingOp };

/** Everything an import will write, worked out without the write lock. */
interface Plan {
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

/** Thrown inside the apply when the plan no longer matches the database: prepare again. */
class StalePlan extends Error {}

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

/**
 * Under the lock: the order again (another process may have imported meanwhile), the plan still
 * current, no stepwise apply running; then the seq is recorded. False when this very bundle was
 * imported meanwhile (nothing to do).
 */
function claim(deps: SyncDeps, plan: Plan, v: Verified, now: number, opts: ImportOptions): boolean {
  const { store } = deps;
  const repo = store.sync;
  const m = v.manifest;
  if (orderOf(deps, v) === 'same') return false;
  if (
    store.entitlements.epoch() !== plan.epoch ||
    (repo.lastImport()?.manifest_sha256 ?? null) !== plan.lastImport
  )
    throw new StalePlan('stale');
  if (store.state.get(APPLYING_KEY) !== undefined)
    throw new StalePlan('another bundle is being applied');
  repo.recordImport({
    seq: m.seq,
    manifest_sha256: v.hash,
    iss: m.iss,
    kid: v.kid,
    iat: m.iat,
    exp: m.exp,
    ack: m.ack,
    records: m.payload.records,
    imported_at: now,
    actor: opts.actor,
  });
  return true;
}

/**
 * Reads the payload again from the start and yields the planned writes in file order, each record
 * parsed again (it passed every check in prepare). `intact()` after the end: the bytes read still
 * have the manifest's sha256.
 */
function walker(fd: number, v: Verified, plan: Plan): { next(): Write | null; intact(): boolean } {
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
function entitlementOf(
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

/** Applies one planned write, under the lock. An insert skips an id present already (a step done twice by two finishers). */
function applyWrite(deps: SyncDeps, w: Write, seq: number, now: number): void {
  const { store } = deps;
  const repo = store.sync;
  switch (w.k) {
    case W_INSERT: {
      const e = entitlementOf(w.rec, undefined, now);
      store.entitlements.insertNew(e, graceDays(e.policy));
      return;
    }
    case W_UPDATE: {
      const e = entitlementOf(w.rec, store.entitlements.get(w.rec.entitlement_id), now);
      store.entitlements.update(e, graceDays(e.policy));
      return;
    }
    case W_REVOKE: {
      repo.revoke(w.id, seq, now);
      // Read here, under the lock: an entitlement this bundle added a moment ago is revoked too.
      const existing = store.entitlements.get(w.id);
      if (existing && existing.status !== 'revoked')
        store.entitlements.update(
          { ...existing, status: 'revoked', updatedAt: now },
          graceDays(existing.policy),
        );
      return;
    }
    case W_SETTING:
      if (w.op.k === 'vendor_keys') setVendorKeys(store, w.op.keys);
      else store.state.set(w.op.key, w.op.value);
      return;
  }
}

/** The audit row (and the time vouch) that ends an import, in its last transaction. */
function finish(
  deps: SyncDeps,
  v: Verified,
  now: number,
  opts: { actor: string; name?: string | undefined },
  plan: Plan,
  resumed: boolean,
): void {
  const m = v.manifest;
  const { diff, counts, seatsCut } = plan;
  const cap = <T>(list: T[]) => list.slice(0, AUDIT_LIST_LIMIT);
  deps.store.audit.append({
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
      ids: {
        added: cap(diff.added),
        changed: cap(diff.changed.map((c) => c.entitlement_id)),
        revoked: cap(diff.revoked),
        suspended: cap(diff.suspended),
        ignored: cap(diff.ignored),
      },
      // Finished after an interruption: the counts are what the finishing pass still wrote.
      ...(resumed ? { resumed: true } : {}),
    },
  });
  // The vendor's signed time vouches for our clock (the time guard's high-water mark).
  deps.timeGuard?.vouch?.(m.iat, now);
}

function applyingDir(deps: SyncDeps): string {
  return deps.store.sync.workDir(APPLYING_DIR);
}

/**
 * A big plan, applied in steps so that no transaction holds the write lock for more than ~10-25 ms
 * of writing: the bundle is copied beside the database (0600), then one transaction records the
 * seq and the ApplyingMarker, then the writes go in steps, each its own transaction checking the
 * marker is still this import's, with a pause between steps so the server's own writes (and other
 * processes) get the lock; the suspensions likewise; the last step writes the audit row and
 * removes the marker. Readers see the bundle arrive over these steps; a crash leaves the marker,
 * and whoever finds it finishes the apply from the copy (resumePending).
 */
async function applyInSteps(
  deps: SyncDeps,
  file: string,
  plan: Plan,
  v: Verified,
  now: number,
  opts: ImportOptions,
  result: ImportResult,
): Promise<ImportResult> {
  const dir = applyingDir(deps);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const copyName = `${v.manifest.seq}-${v.hash.slice(0, 16)}-${randomBytes(4).toString('hex')}.bpsync`;
  const copy = join(dir, copyName);
  let claimed = false;
  try {
    // The copy is checked as the steps read it (and again, whole, before a finisher uses it).
    await copyFile(file, copy);
    await chmod(copy, 0o600);
    const marker: ApplyingMarker = {
      manifest: v.manifest,
      hash: v.hash,
      kid: v.kid,
      file: copyName,
      actor: opts.actor,
      ...(opts.name !== undefined ? { name: opts.name } : {}),
      now,
    };
    const raw = JSON.stringify(marker);
    claimed = await deps.store.txAsync(() => {
      if (!claim(deps, plan, v, now, opts)) return false;
      deps.store.state.set(APPLYING_KEY, raw);
      return true;
    });
    if (!claimed) return unchangedResult(v);
    const fd = openSync(copy, 'r');
    try {
      await stepThrough(deps, fd, plan, v, raw, marker, false, opts.stepOps);
    } finally {
      closeSync(fd);
    }
    return result;
  } finally {
    // Once claimed, the copy belongs to the marker: stepThrough removes it when done.
    if (!claimed) await rm(copy, { force: true });
  }
}

/** The steps of a claimed stepwise apply: writes, suspensions, then the audit row and the marker's removal. */
async function stepThrough(
  deps: SyncDeps,
  fd: number,
  plan: Plan,
  v: Verified,
  raw: string,
  marker: ApplyingMarker,
  resumed: boolean,
  stepOps = Infinity,
): Promise<void> {
  const { store } = deps;
  const repo = store.sync;
  const ours = () => store.state.get(APPLYING_KEY) === raw;
  const stepMs = repo.waitsBriefly() ? STEP_MS_IN_SERVER : STEP_MS;
  let gone = false;
  const step = async (work: () => boolean): Promise<boolean> => {
    const t0 = performance.now();
    // A step's commit need not wait for the disk: lost in a power cut, it is simply worked out and
    // written again from the marker (committed durably before the steps), and the last commit,
    // durable, makes every step before it durable too.
    const more = await store.txAsync(
      () => {
        // Finished (and maybe followed) by another process meanwhile: nothing left for us.
        if (!ours()) {
          gone = true;
          return false;
        }
        return work();
      },
      { lazySync: true, deadlineMs: STEP_BUSY_DEADLINE_MS },
    );
    // Let the others in: our own server's group commit (timers) and other processes polling for
    // the lock. A step that ran long (a loaded machine) is followed by a longer pause.
    await new Promise((r) =>
      setTimeout(r, Math.max(STEP_PAUSE_MS, Math.round((performance.now() - t0) / 4))),
    );
    return more && !gone;
  };
  // The records are parsed outside the lock, a batch ahead; a step writes them for stepMs.
  const walk = walker(fd, v, plan);
  const ahead: Write[] = [];
  let ended = false;
  while (!gone) {
    while (!ended && ahead.length < PARSE_AHEAD) {
      const w = walk.next();
      if (w === null) ended = true;
      else ahead.push(w);
    }
    if (ahead.length === 0) break;
    await step(() => {
      const start = performance.now();
      const last = Math.min(ahead.length, stepOps);
      let j = 0;
      while (j < last) {
        applyWrite(deps, ahead[j]!, marker.manifest.seq, marker.now);
        j++;
        // The clock is read every 8 writes: one write may stall on a page read, 64 could overshoot a lot.
        if ((j & 7) === 0 && performance.now() - start > stepMs) break;
      }
      ahead.splice(0, j);
      return true;
    });
  }
  if (!gone && !walk.intact()) {
    // Our own copy changed under us: stop before the audit row; a finisher checks the copy whole
    // and refuses a damaged one (then the bundle must be given again).
    throw new AppError(
      'conflict',
      `the copy of bundle seq ${marker.manifest.seq} in ${APPLYING_DIR}/ changed while it was applied; import that bundle again to finish it`,
      { seq: marker.manifest.seq },
    );
  }
  while (
    !gone &&
    (await step(() => repo.suspendUnseenSome(marker.now, SUSPEND_STEP) === SUSPEND_STEP))
  );
  if (gone) return;
  await store.txAsync(
    () => {
      if (!ours()) return;
      finish(deps, v, marker.now, marker, plan, resumed);
      store.state.delete(APPLYING_KEY);
    },
    { deadlineMs: STEP_BUSY_DEADLINE_MS },
  );
  await rm(join(applyingDir(deps), marker.file), { force: true });
}

/**
 * A step waits this long for another process's lock: the apply is accepted already, and giving up
 * leaves it to be finished later, so it waits longer than a client's write would.
 */
const STEP_BUSY_DEADLINE_MS = 30_000;
/** Records parsed ahead of a step (outside the lock, ~a few ms); a step writes what stepMs allow of them. */
const PARSE_AHEAD = 512;
/** Suspensions per step of a stepwise apply. */
const SUSPEND_STEP = 1000;

/**
 * Finishes an import left half-applied (see ApplyingMarker), from the copy beside the database
 * (or from `given`, when that is the same bundle and the copy is gone): the remaining writes are
 * worked out again against the current rows, so what was applied is skipped. Returns the result
 * when `given` is that bundle, else undefined (also when nothing was pending). Throws `conflict`
 * when neither the copy nor `given` is that bundle.
 */
export async function resumePending(
  deps: SyncDeps,
  given: { file: string; fd: number } | undefined,
): Promise<ImportResult | undefined> {
  const raw = deps.store.state.get(APPLYING_KEY);
  if (raw === undefined) return undefined;
  const marker = JSON.parse(raw) as ApplyingMarker;
  const givenHash = given ? manifestHashOf(given.fd) : undefined;
  let source = join(applyingDir(deps), marker.file);
  if (!existsSync(source) && givenHash === marker.hash) source = given!.file;
  const lost = () =>
    new AppError(
      'conflict',
      `bundle seq ${marker.manifest.seq} was being applied in steps and its copy ${source} is gone or damaged; import that bundle again to finish it`,
      { seq: marker.manifest.seq, manifest_sha256: marker.hash },
      'run: bp-license-server sync import <the bundle of that seq>',
    );
  let fd: number;
  try {
    fd = openSync(source, 'r');
  } catch {
    throw lost();
  }
  try {
    if (manifestHashOf(fd) !== marker.hash) throw lost();
    const header = readHeader(fd);
    const v: Verified = {
      manifest: marker.manifest,
      hash: marker.hash,
      kid: marker.kid,
      payloadOffset: header.payloadOffset,
      fileSize: header.fileSize,
    };
    await checkPayload(source, v);
    const plan = await prepare(deps, fd, v, marker.now);
    await stepThrough(deps, fd, plan, v, raw, marker, true);
    if (givenHash !== marker.hash) return undefined;
    return {
      status: 'applied',
      seq: v.manifest.seq,
      manifest_sha256: v.hash,
      ...plan.counts,
      settings: plan.diff.settings.map((s) => s.key),
      seats_cut: plan.seatsCut,
    };
  } finally {
    closeSync(fd);
  }
}

/** The manifest hash of a bundle file, or undefined when its header cannot be read. */
function manifestHashOf(fd: number): string | undefined {
  try {
    return manifestHash(readHeader(fd).manifest);
  } catch {
    return undefined;
  }
}

/** The stepwise apply in progress (or interrupted), if any, for `sync status`. */
export function applyingNow(
  deps: SyncDeps,
): { seq: number; manifest_sha256: string; since: string } | null {
  const raw = deps.store.state.get(APPLYING_KEY);
  if (raw === undefined) return null;
  const m = JSON.parse(raw) as ApplyingMarker;
  return { seq: m.manifest.seq, manifest_sha256: m.hash, since: toIso(m.now) };
}

/** The second pass over the payload, without the write lock: every record checked, the writes listed. */
async function prepare(deps: SyncDeps, fd: number, v: Verified, now: number): Promise<Plan> {
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
        `the payload holds ${n} records, the manifest says ${m.payload.records}`,
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
