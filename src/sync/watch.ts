/**
 * Folder sync: polls D/inbox for `*.bpsync`, imports each once it has stopped changing, and moves
 * it to D/processed or to D/rejected beside a `.error.json` that says why.
 *
 * Polling, not fs.watch: change events are unreliable on USB sticks and network mounts, and a
 * file still being copied must not be read. A file is taken only when its size and mtime have not
 * changed for `stablePolls` consecutive polls.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { AppError, isAppError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ImportResult } from './import.ts';

export const SYNC_FOLDERS = ['inbox', 'outbox', 'processed', 'rejected'] as const;

/** Creates D/inbox, D/outbox, D/processed and D/rejected when missing. */
export function ensureSyncFolders(dir: string): void {
  for (const f of SYNC_FOLDERS) mkdirSync(join(dir, f), { recursive: true });
}

export interface FolderSyncOptions {
  dir: string;
  /** Imports one file (the sync service's importFile with an actor). */
  importFile: (file: string, name: string) => Promise<ImportResult>;
  log: Logger;
  /** The wall clock, for `.error.json` times. */
  now: () => number;
  intervalMs?: number;
  stablePolls?: number;
  /** After a failure that is not a refusal (a busy or broken database), try the file again after this long. */
  retryMs?: number;
}

export interface FolderSync {
  /** Runs one poll now (tests); resolves when it is done. */
  poll(): Promise<void>;
  /** Stops polling; resolves once an import in progress has finished. */
  stop(): Promise<void>;
}

interface Seen {
  size: number;
  mtimeMs: number;
  stable: number;
  retryAt?: number;
}

/** Is this inbox entry a bundle to consider? Dotfiles and `*.part` are copies in progress. */
export function isCandidate(name: string): boolean {
  return name.endsWith('.bpsync') && !name.startsWith('.') && !name.endsWith('.part');
}

/** Starts the poll loop (the first poll runs after one interval). */
export function startFolderSync(o: FolderSyncOptions): FolderSync {
  const interval = o.intervalMs ?? 1000;
  const stablePolls = o.stablePolls ?? 2;
  const retryMs = o.retryMs ?? 60_000;
  const inbox = join(o.dir, 'inbox');
  ensureSyncFolders(o.dir);
  const seen = new Map<string, Seen>();
  let running: Promise<void> | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  function moveTo(folder: 'processed' | 'rejected', name: string): string {
    let target = join(o.dir, folder, name);
    if (existsSync(target)) {
      // Never overwrite an earlier record of the same name.
      const ext = extname(name);
      target = join(o.dir, folder, `${name.slice(0, name.length - ext.length)}.${new Date(o.now()).toISOString().replace(/[:.]/g, '-')}${ext}`);
    }
    renameSync(join(inbox, name), target);
    return target;
  }

  async function take(name: string, entry: Seen): Promise<void> {
    const file = join(inbox, name);
    try {
      const r = await o.importFile(file, name);
      moveTo('processed', name);
      seen.delete(name);
      o.log.info('sync bundle imported', { file: name, seq: r.seq, status: r.status, added: r.added, changed: r.changed, revoked: r.revoked, unchanged: r.unchanged, suspended: r.suspended });
    } catch (err) {
      if (isAppError(err) && err.code === 'bundle_rejected') {
        const target = moveTo('rejected', name);
        seen.delete(name);
        const report = { code: err.code, message: err.message, rule: err.details.rule ?? null, at: new Date(o.now()).toISOString(), details: err.details };
        // Written aside and renamed, so whoever watches the folder never reads half of it.
        writeFileSync(`${target}.error.json.tmp`, `${JSON.stringify(report, null, 2)}\n`);
        renameSync(`${target}.error.json.tmp`, `${target}.error.json`);
        o.log.warn('sync bundle rejected', { file: name, rule: err.details.rule, message: err.message });
      } else if ((err as NodeJS.ErrnoException)?.code === 'ENOENT') {
        seen.delete(name);
      } else {
        entry.retryAt = o.now() + retryMs;
        const e = err instanceof AppError ? { code: err.code, message: err.message } : { error: String(err) };
        o.log.error('sync bundle could not be imported; will try again', { file: name, retry_in_s: retryMs / 1000, ...e });
      }
    }
  }

  async function pollOnce(): Promise<void> {
    let names: string[];
    try {
      names = readdirSync(inbox, { withFileTypes: true }).filter((d) => d.isFile() && isCandidate(d.name)).map((d) => d.name).sort();
    } catch (err) {
      o.log.error('cannot read the sync inbox', { dir: inbox, error: String(err) });
      return;
    }
    for (const name of [...seen.keys()]) if (!names.includes(name)) seen.delete(name);
    for (const name of names) {
      if (stopped) return;
      let st;
      try {
        st = statSync(join(inbox, name));
      } catch {
        continue;
      }
      const prev = seen.get(name);
      if (!prev || prev.size !== st.size || prev.mtimeMs !== st.mtimeMs) {
        seen.set(name, { size: st.size, mtimeMs: st.mtimeMs, stable: 0 });
        continue;
      }
      prev.stable++;
      if (prev.stable < stablePolls) continue;
      if (prev.retryAt !== undefined && o.now() < prev.retryAt) continue;
      await take(name, prev);
    }
  }

  function poll(): Promise<void> {
    running ??= pollOnce().finally(() => {
      running = undefined;
    });
    return running;
  }

  function schedule(): void {
    if (stopped) return;
    timer = setTimeout(() => {
      void poll().then(schedule);
    }, interval);
    timer.unref();
  }

  schedule();
  o.log.info('watching sync folder', { inbox, interval_ms: interval });
  return {
    poll,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
