import { counted } from '../../plural.ts';
import { basename, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { resolveSync } from '../../config.ts';
import type { Context } from '../../context.ts';
import type { SyncService } from '../../sync/service.ts';
import type { ImportResult } from '../../sync/import.ts';
import { cliActor, emit, type CliIo } from '../io.ts';
import type { CommandKit } from '../main.ts';
import { accessSync, constants as fsConstants } from 'node:fs';
import { withFile } from '../../file-errors.ts';

/** The sync folder: the flag, else BPLS_SYNC_DIR (from the cwd), else `<data dir>/sync-bundles`. */
export function syncDirOf(io: CliIo, flag: string | undefined, dataDir: string): string {
  return resolveSync({ syncDir: flag }, io.env, io.cwd, dataDir).dir;
}

/** The sync service of an open context. */
export function syncServiceOf(ctx: Context): SyncService {
  return ctx.services.sync;
}

/** People's summary of an import. */
export function describeImport(r: ImportResult): string {
  if (r.status === 'unchanged')
    return `bundle seq ${r.seq} is the one imported last: nothing to do`;
  const counts = `${r.added} added, ${r.changed} changed, ${r.revoked} revoked, ${r.suspended} suspended, ${r.unchanged} unchanged${r.ignored ? `, ${r.ignored} ignored (revoked for good)` : ''}`;
  const lines = [
    r.status === 'dry_run'
      ? `dry run of bundle seq ${r.seq} (nothing was changed): ${counts}`
      : `imported bundle seq ${r.seq}: ${counts}`,
  ];
  if (r.diff) {
    for (const id of r.diff.added) lines.push(`  + ${id}`);
    for (const c of r.diff.changed) lines.push(`  ~ ${c.entitlement_id} (${c.fields.join(', ')})`);
    for (const id of r.diff.revoked) lines.push(`  x ${id} revoked`);
    for (const id of r.diff.suspended) lines.push(`  - ${id} suspended (not in this bundle)`);
    for (const id of r.diff.ignored) lines.push(`  ! ${id} ignored: revoked for good`);
    for (const s of r.diff.settings)
      lines.push(`  setting ${s.key}: ${JSON.stringify(s.from)} -> ${JSON.stringify(s.to)}`);
    if (r.diff.truncated) lines.push('  (lists cut at 1000 entries; the counts are exact)');
  } else if (r.settings.length) {
    lines.push(`  settings changed: ${r.settings.join(', ')}`);
  }
  for (const c of r.seats_cut)
    lines.push(
      `  seats cut: ${c.entitlement_id} now allows ${c.max_seats}, ${c.in_use} in use (running leases continue; no new seat until under the limit)`,
    );
  return lines.join('\n');
}

/** sync import|export|status (the folder watch and outbound sync are `serve`'s: server.ts). */
export function registerSync(program: Command, kit: CommandKit): void {
  const sync = program
    .command('sync')
    .description('BPSYNC/1 bundles: import vendor bundles, export usage for the vendor');

  sync
    .command('import <file>')
    .description(
      'import a vendor bundle (*.bpsync): every check, then all of it (a big one in short steps; an interrupted one is finished by the next import or serve) or nothing',
    )
    .option('--dry-run', 'check the bundle and print what would change; change nothing')
    .action(async (file: string, opts: { dryRun?: boolean }, cmd: Command) => {
      await kit.withContext(cmd, async (ctx, g) => {
        const path = resolve(kit.io.cwd, file);
        // Missing or unreadable: said of the bundle, by the name given (the import re-checks it).
        withFile({ action: 'read', what: 'the bundle', file }, () =>
          accessSync(path, fsConstants.R_OK),
        );
        const r = await syncServiceOf(ctx).importFile(path, {
          dryRun: opts.dryRun === true,
          actor: cliActor(),
          name: basename(path),
        });
        emit(kit.io, g.json, r, () => describeImport(r));
      });
    });

  sync
    .command('export')
    .description(
      'write the next signed usage export for the vendor (default: <data dir>/sync-bundles/outbox/)',
    )
    .option(
      '--out <dir>',
      'folder to write it to (default: <sync dir>/outbox, the sync dir being BPLS_SYNC_DIR, else <data dir>/sync-bundles)',
    )
    .action(async (opts: { out?: string }, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const outDir =
          opts.out !== undefined
            ? resolve(kit.io.cwd, opts.out)
            : join(syncDirOf(kit.io, undefined, g.dataDir), 'outbox');
        const r = syncServiceOf(ctx).exportTo({ outDir, actor: cliActor() });
        emit(
          kit.io,
          g.json,
          r,
          () =>
            `wrote export seq ${r.seq}: ${r.file} (${counted(r.records, 'record')}, ${counted(r.bytes, 'byte')})`,
        );
      });
    });

  sync
    .command('status')
    .description('pinned vendor keys, the last import and export, bundle-managed entitlements')
    .action(async (_o: unknown, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const s = syncServiceOf(ctx).status();
        emit(kit.io, g.json, s, () =>
          [
            `server_id:        ${s.server_id}`,
            `vendor keys:      ${s.vendor_keys.length ? s.vendor_keys.map((k) => k.kid).join(', ') : '(none pinned: bundles cannot be imported)'}`,
            `manual entitlements allowed: ${s.allow_manual_provisioning ? 'yes' : 'no (closed by the vendor)'}`,
            `last import:      ${s.last_import ? `seq ${s.last_import.seq}, signed ${s.last_import.iat}, imported ${s.last_import.imported_at}` : 'none'}`,
            `last export:      ${s.last_export ? `seq ${s.last_export.seq}, made ${s.last_export.created_at}` : 'none'}`,
            `bundle entitlements: ${s.bundle_entitlements.active} active, ${s.bundle_entitlements.suspended} suspended, ${s.bundle_entitlements.revoked} revoked`,
            ...(s.applying
              ? [
                  `applying:         bundle seq ${s.applying.seq} since ${s.applying.since} (in steps; an interrupted one is finished by the next import or by serve)`,
                ]
              : []),
          ].join('\n'),
        );
      });
    });
}
