/**
 * The stepwise apply of a big import: the bundle, past APPLY_IN_ONE_MAX writes, is applied in short
 * transactions of ~10-25 ms of writing each instead of one, so the server keeps answering. One
 * transaction records the seq and an ApplyingMarker, the steps follow from a 0600 copy of the
 * bundle in `<data dir>/sync-applying/`, and the last step writes the audit row. An interrupted
 * apply is finished by whoever finds the marker (resumePending), so the end state is still the
 * whole bundle and nothing is applied twice (sync-bundles/README.md section 4: the old state or
 * the new; README "Operations" tells the operator how it looks meanwhile).
 */
import { closeSync, existsSync, openSync } from 'node:fs';
import { chmod, copyFile, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { AppError } from '../errors.ts';
import { toIso } from '../clock.ts';
import { manifestHash, readHeader } from './format.ts';
import type { Manifest } from './manifest.ts';
import { checkPayload, unchangedResult, type Verified } from './import-checks.ts';
import { prepare, walker, type Plan, type Write } from './import-plan.ts';
import { APPLYING_KEY, applyWrite, claim, finish } from './import-apply.ts';
import type { ImportOptions, ImportResult } from './import.ts';
import type { SyncDeps } from './service.ts';
import { makeDirs } from '../fs-dirs.ts';

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
/** Folder beside the database holding the copy of the bundle being applied in steps. */
const APPLYING_DIR = 'sync-applying';
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
export async function applyInSteps(
  deps: SyncDeps,
  file: string,
  plan: Plan,
  v: Verified,
  now: number,
  opts: ImportOptions,
  result: ImportResult,
): Promise<ImportResult> {
  const dir = applyingDir(deps);
  makeDirs(dir, 0o700);
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
