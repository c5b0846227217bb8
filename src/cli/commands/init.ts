import { redactUrl } from '../../storage/pg/driver.ts';
import type { Command } from 'commander';
import { AppError } from '../../errors.ts';
import { initServer } from '../../init.ts';
import { emit, cliActor } from '../io.ts';
import { parseVendorKeys } from '../../sync/trust.ts';
import type { CommandKit } from '../main.ts';

/**
 * init: data dir, database, server key, first admin token. Idempotent: on a directory that holds a
 * whole server it changes nothing (but pins --vendor-key keys if none are pinned yet), says so and
 * exits 0, so scripts may run it every time; --force starts over (old files kept aside).
 */
export function registerInit(program: Command, kit: CommandKit): void {
  program
    .command('init')
    .description(
      'create the data directory, database and server key; print the server id, public key and first admin token (shown once). On a directory already initialised: change nothing, print its server id, exit 0',
    )
    .option(
      '--force',
      'start over: move an existing server aside (renamed *.replaced-<time>) and create a new one, with a new admin token; refused while a server runs on the directory',
    )
    .option(
      '--vendor-key <k4.public>',
      'pin a vendor public key that signs import bundles (repeat for several); later changes come only in signed bundles',
      (v: string, all: string[]) => [...all, v],
      [] as string[],
    )
    .action(async (opts: { force?: boolean; vendorKey?: string[] }, cmd: Command) => {
      const g = kit.globals(cmd);
      // Checked before anything is created: a bad key must not leave a half-made server behind.
      const vendorKeys = parseVendorKeys(
        opts.vendorKey ?? [],
        (m) =>
          new AppError('invalid_request', `--vendor-key: ${m}`, {
            issues: [{ path: 'vendor_key', message: m }],
          }),
      );
      const r = initServer({
        dataDir: g.dataDir,
        database: g.database,
        nativeCacheDir: g.nativeCacheDir,
        durability: g.durability,
        vendorKeys,
        force: opts.force === true,
        actor: cliActor(),
        onNote: (n) => kit.io.stderr(`${n.startsWith('warning:') ? '' : 'note: '}${n}\n`),
      });
      const { info } = r;
      const kids = r.vendorKids.join(', ');
      if (!r.created) {
        const result = {
          server_id: info.server_id,
          public_key: info.public_key,
          kid: info.kid,
          admin_token: null,
          created: false,
          data_dir: g.dataDir,
          ...(r.pinned
            ? { vendor_keys: r.vendorKids, vendor_keys_pinned: r.pinned === 'pinned' }
            : {}),
        };
        emit(kit.io, g.json, result, () =>
          [
            `already initialised: ${g.dataDir} (its server is kept; ${r.pinned === 'pinned' ? 'only the vendor keys were pinned' : 'nothing was changed'})`,
            `server_id:  ${info.server_id}`,
            `public_key: ${info.public_key}`,
            ...(r.pinned === 'pinned' ? [`pinned vendor keys: ${kids}`] : []),
            'no new admin token was made (make one with: tokens create --name NAME)',
            g.database
              ? `its database: ${redactUrl(g.database)} (shared by every node; init --force does not apply)`
              : 'to start over with a new server: init --force (the old files are moved aside as *.replaced-<time>)',
          ].join('\n'),
        );
        return;
      }
      const result = {
        server_id: info.server_id,
        public_key: info.public_key,
        kid: info.kid,
        admin_token: r.adminToken,
        created: true,
        data_dir: g.dataDir,
        vendor_keys: r.vendorKids,
        ...(r.movedAside.length ? { moved_aside: r.movedAside } : {}),
      };
      emit(kit.io, g.json, result, () =>
        [
          `initialised ${g.dataDir}${g.database ? ` for the PostgreSQL database ${redactUrl(g.database)}` : ''}`,
          `server_id:   ${info.server_id}`,
          `public_key:  ${info.public_key}`,
          `kid:         ${info.kid}`,
          `admin_token: ${r.adminToken}`,
          `vendor keys: ${kids || '(none: no bundle can be imported until one is pinned with init --vendor-key)'}`,
          '',
          'The admin token is shown this once; keep it safe (it is stored only as a keyed hash).',
          ...(g.database
            ? [
                'Copy this data directory (server.key, server.json) to every node that serves this database.',
              ]
            : []),
          ...(r.movedAside.length
            ? ['', `the previous server's files were kept as: ${r.movedAside.join(', ')}`]
            : []),
        ].join('\n'),
      );
    });
}
