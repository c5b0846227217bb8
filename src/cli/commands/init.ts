import { existsSync, mkdirSync } from 'node:fs';
import type { Command } from 'commander';
import { AppError } from '../../errors.ts';
import { createIdentity, dataPaths, initState, moveAside, tightenModes } from '../../data-dir.ts';
import { openStore } from '../../storage/store.ts';
import { loadSqliteBinding } from '../../storage/native.ts';
import { lockDataDir } from '../../storage/data-dir-lock.ts';
import { createServices, openContext } from '../../context.ts';
import { systemClock } from '../../clock.ts';
import { emit, cliActor } from '../io.ts';
import { parseVendorKeys, pinAtInit } from '../../sync/trust.ts';
import type { CommandKit } from '../main.ts';

function printModeNotes(kit: CommandKit, notes: string[]): void {
  for (const n of notes) kit.io.stderr(`${n.startsWith('warning:') ? '' : 'note: '}${n}\n`);
}

/** init: data dir, database, server key, first admin token. Idempotent; --force starts over (old files kept aside). */
export function registerInit(program: Command, kit: CommandKit): void {
  program
    .command('init')
    .description(
      'create the data directory, database and server key; print the server id, public key and first admin token (shown once)',
    )
    .option(
      '--force',
      'start over: move an existing server aside (renamed *.replaced-<time>) and create a new one',
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
      const state = initState(g.dataDir);
      if (state === 'complete' && !opts.force) {
        // The whole start-up check, not just the identity: "already initialised" must not be said of
        // a server whose database is empty or damaged.
        const checked = openContext({
          dataDir: g.dataDir,
          nativeCacheDir: g.nativeCacheDir,
          durability: g.durability,
        });
        const { info } = checked;
        checked.close();
        printModeNotes(kit, tightenModes(g.dataDir, { dir: true }));
        let pinned: 'pinned' | 'unchanged' | undefined;
        if (vendorKeys.length > 0) {
          // First pinning on a server made without --vendor-key; a different set is refused.
          const store = openStore(dataPaths(g.dataDir).db, {
            durability: g.durability,
            nativeBinding: loadSqliteBinding(g.nativeCacheDir),
            mustExist: true,
          });
          try {
            pinned = store.tx(() => pinAtInit(store, vendorKeys, cliActor(), systemClock.now()));
          } finally {
            store.close();
          }
        }
        const result = {
          server_id: info.server_id,
          public_key: info.public_key,
          kid: info.kid,
          admin_token: null,
          created: false,
          data_dir: g.dataDir,
          ...(pinned
            ? { vendor_keys: vendorKeys.map((k) => k.kid), vendor_keys_pinned: pinned === 'pinned' }
            : {}),
        };
        emit(kit.io, g.json, result, () =>
          [
            `already initialised: ${g.dataDir}`,
            `server_id:  ${info.server_id}`,
            `public_key: ${info.public_key}`,
            ...(pinned === 'pinned'
              ? [`pinned vendor keys: ${vendorKeys.map((k) => k.kid).join(', ')}`]
              : []),
            'no new admin token was made (make one with: tokens create)',
          ].join('\n'),
        );
        return;
      }
      if (state === 'partial' && !opts.force) {
        throw new AppError(
          'conflict',
          `${g.dataDir} is only partly initialised; refusing to overwrite it`,
          { data_dir: g.dataDir },
          'restore it from a backup, or run init --force (existing files are kept aside)',
        );
      }
      // While a server holds the directory its files must not be replaced under it; and no server
      // may start while they are.
      // A new directory too: two inits at once must not both create a server in it (the loser would
      // print an identity the directory does not keep).
      if (state === 'none') mkdirSync(g.dataDir, { recursive: true, mode: 0o700 });
      const lock = lockDataDir(g.dataDir, {
        role: 'init',
        nativeBinding: loadSqliteBinding(g.nativeCacheDir),
      });
      if (state === 'none' && initState(g.dataDir) !== 'none') {
        lock.release({ discard: true });
        throw new AppError(
          'conflict',
          `${g.dataDir} was initialised by another process meanwhile; nothing was created`,
          { data_dir: g.dataDir },
          `run init again to see that server (or init --force to replace it)`,
        );
      }
      try {
        const now = systemClock.now();
        // A folder made beforehand (mkdir: 0755) would leave the files listable and the database readable.
        if (existsSync(g.dataDir)) printModeNotes(kit, tightenModes(g.dataDir, { dir: true }));
        const moved =
          state === 'none'
            ? []
            : moveAside(g.dataDir, new Date(now).toISOString().replace(/[:.]/g, '-'));
        const { info, key } = createIdentity(g.dataDir, now);
        const store = openStore(dataPaths(g.dataDir).db, {
          durability: g.durability,
          nativeBinding: loadSqliteBinding(g.nativeCacheDir),
        });
        let token: string;
        try {
          const services = createServices(store, systemClock, key, info);
          store.tx(() => {
            store.state.set('server_id', info.server_id);
            store.audit.append({
              at: now,
              actor: cliActor(),
              action: 'server.init',
              targetType: 'server',
              targetId: info.server_id,
              details: { public_key: info.public_key, kid: info.kid },
            });
            if (vendorKeys.length > 0) pinAtInit(store, vendorKeys, cliActor(), now);
          });
          token = services.apiTokens.create(
            { name: 'initial admin', role: 'admin' },
            cliActor(),
          ).token;
        } finally {
          store.close();
        }
        const result = {
          server_id: info.server_id,
          public_key: info.public_key,
          kid: info.kid,
          admin_token: token,
          created: true,
          data_dir: g.dataDir,
          vendor_keys: vendorKeys.map((k) => k.kid),
          ...(moved.length ? { moved_aside: moved } : {}),
        };
        emit(kit.io, g.json, result, () =>
          [
            `initialised ${g.dataDir}`,
            `server_id:   ${info.server_id}`,
            `public_key:  ${info.public_key}`,
            `kid:         ${info.kid}`,
            `admin_token: ${token}`,
            `vendor keys: ${vendorKeys.length ? vendorKeys.map((k) => k.kid).join(', ') : '(none: no bundle can be imported until one is pinned with init --vendor-key)'}`,
            '',
            'The admin token is shown this once; keep it safe (it is stored only as a keyed hash).',
            ...(moved.length
              ? ['', `the previous server's files were kept as: ${moved.join(', ')}`]
              : []),
          ].join('\n'),
        );
      } finally {
        // A lock file init made is not left behind: the data directory holds its three files.
        lock.release({ discard: true });
      }
    });
}
