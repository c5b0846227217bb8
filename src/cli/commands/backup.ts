import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
} from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { AppError } from '../../errors.ts';
import { dataPaths } from '../../data-dir.ts';
import { loadSqliteBinding } from '../../storage/native.ts';
import { checkDatabaseCopy, damagedDatabase } from '../../storage/integrity.ts';
import { emit } from '../io.ts';
import type { CommandKit } from '../main.ts';
import { makeDirs } from '../../fs-dirs.ts';

/**
 * backup --out DIR: a consistent online copy of the database (SQLite's backup API, safe while the
 * server runs) plus server.key and server.json, in a new folder; every file 0600, the folder 0700.
 * The database is checked first (PRAGMA integrity_check) and a damaged one is not backed up: a
 * backup that copies damage would replace the last good one. The copy is checked again
 * (quick_check) before success is reported.
 */
export function registerBackup(program: Command, kit: CommandKit): void {
  program
    .command('backup')
    .description(
      'check the database (integrity_check), then copy it (consistent, online), server.key and server.json into a new folder (files 0600); exit 1 if the database is damaged',
    )
    .requiredOption('--out <dir>', 'the folder to create (must not exist, or be empty)')
    .action(async (opts: { out: string }, cmd: Command) => {
      await kit.withContext(cmd, async (ctx, g) => {
        const out = resolve(kit.io.cwd, opts.out);
        if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0)) {
          throw new AppError(
            'conflict',
            `${out} exists and is not an empty folder; refusing to overwrite a backup`,
            {},
            'choose a new --out folder',
          );
        }
        const src = dataPaths(ctx.dataDir);
        const problems = ctx.store.integrityProblems('integrity_check');
        if (problems.length > 0) {
          throw damagedDatabase(
            src.db,
            'integrity_check',
            `is damaged (PRAGMA integrity_check: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? '; …' : ''}); no backup was made, so the previous backups stay the good ones`,
            { problems },
          );
        }
        const made = !existsSync(out);
        makeDirs(out, 0o700);
        chmodSync(out, 0o700);
        const dst = dataPaths(out);
        try {
          // SQLite keeps an existing file's mode: the copy holds every lease id (bearer credentials).
          closeSync(openSync(dst.db, 'wx', 0o600));
          await ctx.store.backupTo(dst.db);
          for (const [from, to] of [
            [src.key, dst.key],
            [src.info, dst.info],
          ] as const) {
            copyFileSync(from, to);
            chmodSync(to, 0o600);
          }
          const copyProblems = checkDatabaseCopy(dst.db, loadSqliteBinding(g.nativeCacheDir));
          if (copyProblems.length > 0) {
            throw new AppError(
              'storage_unavailable',
              `the copy ${dst.db} failed its check (${copyProblems.slice(0, 3).join('; ')}); the disk under ${out} may be failing; no backup was made`,
              { problems: copyProblems },
              'back up to another disk',
            );
          }
        } catch (err) {
          // Never leave a half-made backup that looks like a good one.
          for (const f of [dst.db, `${dst.db}-wal`, `${dst.db}-shm`, dst.key, dst.info])
            rmSync(f, { force: true });
          if (made) rmSync(out, { recursive: true, force: true });
          throw err;
        }
        const head = ctx.services.audit.head();
        const r = {
          dir: out,
          files: [dst.db, dst.key, dst.info],
          bytes: statSync(dst.db).size,
          integrity_check: 'ok',
          audit_head: head,
        };
        emit(
          kit.io,
          g.json,
          r,
          () =>
            `backed up ${ctx.dataDir} to ${out} (license.db ${r.bytes} bytes, integrity_check ok; server.key, server.json; audit head ${head.seq})\nrestore: stop the server and copy the three files into an empty data directory`,
        );
      });
    });
}
