import type { Command } from 'commander';
import { AppError } from '../../errors.ts';
import { createIdentity, dataPaths, initState, loadIdentity, moveAside } from '../../data-dir.ts';
import { openStore } from '../../storage/store.ts';
import { loadSqliteBinding } from '../../storage/native.ts';
import { createServices } from '../../context.ts';
import { systemClock } from '../../clock.ts';
import { emit, cliActor } from '../io.ts';
import type { CommandKit } from '../main.ts';

/** init: data dir, database, server key, first admin token. Idempotent; --force starts over (old files kept aside). */
export function registerInit(program: Command, kit: CommandKit): void {
  program
    .command('init')
    .description('create the data directory, database and server key; print the server id, public key and first admin token (shown once)')
    .option('--force', 'start over: move an existing server aside (renamed *.replaced-<time>) and create a new one')
    .action(async (opts: { force?: boolean }, cmd: Command) => {
      const g = kit.globals(cmd);
      const state = initState(g.dataDir);
      if (state === 'complete' && !opts.force) {
        const { info } = loadIdentity(g.dataDir);
        const result = { server_id: info.server_id, public_key: info.public_key, kid: info.kid, admin_token: null, created: false, data_dir: g.dataDir };
        emit(kit.io, g.json, result, () =>
          [`already initialised: ${g.dataDir}`, `server_id:  ${info.server_id}`, `public_key: ${info.public_key}`, 'no new admin token was made (make one with: tokens create)'].join('\n'),
        );
        return;
      }
      if (state === 'partial' && !opts.force) {
        throw new AppError('conflict', `${g.dataDir} is only partly initialised; refusing to overwrite it`, { data_dir: g.dataDir }, 'restore it from a backup, or run init --force (existing files are kept aside)');
      }
      const now = systemClock.now();
      const moved = state === 'none' ? [] : moveAside(g.dataDir, new Date(now).toISOString().replace(/[:.]/g, '-'));
      const { info, key } = createIdentity(g.dataDir, now);
      const store = openStore(dataPaths(g.dataDir).db, { durability: g.durability, nativeBinding: loadSqliteBinding(g.nativeCacheDir) });
      let token: string;
      try {
        const services = createServices(store, systemClock, key, info);
        store.tx(() => {
          store.state.set('server_id', info.server_id);
          store.audit.append({ at: now, actor: cliActor(), action: 'server.init', targetType: 'server', targetId: info.server_id, details: { public_key: info.public_key, kid: info.kid } });
        });
        token = services.apiTokens.create({ name: 'initial admin', role: 'admin' }, cliActor()).token;
      } finally {
        store.close();
      }
      const result = { server_id: info.server_id, public_key: info.public_key, kid: info.kid, admin_token: token, created: true, data_dir: g.dataDir, ...(moved.length ? { moved_aside: moved } : {}) };
      emit(kit.io, g.json, result, () =>
        [
          `initialised ${g.dataDir}`,
          `server_id:   ${info.server_id}`,
          `public_key:  ${info.public_key}`,
          `kid:         ${info.kid}`,
          `admin_token: ${token}`,
          '',
          'The admin token is shown this once; keep it safe (it is stored only as a keyed hash).',
          ...(moved.length ? ['', `the previous server's files were kept as: ${moved.join(', ')}`] : []),
        ].join('\n'),
      );
    });
}
