import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { AppError } from '../../errors.ts';
import { dataPaths } from '../../data-dir.ts';
import { emit } from '../io.ts';
import type { CommandKit } from '../main.ts';

/**
 * backup --out DIR: a consistent online copy of the database (SQLite's backup API, safe while the
 * server runs) plus server.key (0600) and server.json, in a new folder.
 */
export function registerBackup(program: Command, kit: CommandKit): void {
  program
    .command('backup')
    .description('copy the database (consistent, online), server.key and server.json into a new folder')
    .requiredOption('--out <dir>', 'the folder to create (must not exist, or be empty)')
    .action(async (opts: { out: string }, cmd: Command) => {
      await kit.withContext(cmd, async (ctx, g) => {
        const out = resolve(kit.io.cwd, opts.out);
        if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0)) {
          throw new AppError('conflict', `${out} exists and is not an empty folder; refusing to overwrite a backup`, {}, 'choose a new --out folder');
        }
        mkdirSync(out, { recursive: true, mode: 0o700 });
        const src = dataPaths(ctx.dataDir);
        const dst = dataPaths(out);
        await ctx.store.db.backup(dst.db);
        copyFileSync(src.key, dst.key);
        chmodSync(dst.key, 0o600);
        copyFileSync(src.info, dst.info);
        const head = ctx.store.audit.head();
        const r = { dir: out, files: [dst.db, dst.key, dst.info], bytes: statSync(dst.db).size, audit_head: head };
        emit(kit.io, g.json, r, () => `backed up ${ctx.dataDir} to ${out} (license.db ${r.bytes} bytes, server.key, server.json; audit head ${head.seq})\nrestore: stop the server and copy the three files into an empty data directory`);
      });
    });
}
