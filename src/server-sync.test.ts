// startServer runs `serve --sync-dir/--sync-url` itself: the folder watch and the outbound sync
// import on the server's one connection, log through its one logger, and stop with close().
import { existsSync, readdirSync, readlinkSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { initServer } from './init.ts';
import { startServer } from './server.ts';
import { createLogger } from './log.ts';
import { dataPaths } from './data-dir.ts';
import { writeImportBundle } from './sync/vendor.ts';
import { generateSigningKey, verifyKeyFromPaserk } from './tokens/keys.ts';
import { tempDir } from '../test/helpers.ts';
import { contentRecords, ent } from '../test/sync/world.ts';
import { standIn } from '../test/sync/stand-in.ts';

const root = tempDir('bpls-serve-sync-');
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Resolves once cond() holds; fails after 10 s. */
async function until(what: string, cond: () => boolean): Promise<void> {
  for (const start = Date.now(); !cond(); await sleep(20))
    if (Date.now() - start > 10_000) throw new Error(`timed out waiting for ${what}`);
}

/** Connections this process holds open on the database file (its -wal and -shm aside). */
function connectionsTo(db: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === db;
    } catch {
      return false;
    }
  }).length;
}

describe('startServer with sync', () => {
  it('imports what arrives in the inbox and pushes exports on its own connection and logger, and stops both with close()', async () => {
    const dataDir = join(root, 'data');
    const syncDir = join(root, 'sync');
    const vendor = generateSigningKey();
    const made = initServer({
      dataDir,
      nativeCacheDir: join(root, 'cache'),
      durability: 'full',
      vendorKeys: [verifyKeyFromPaserk(vendor.publicPaserk)],
      force: false,
      actor: 'test',
      onNote: () => {},
    });
    const now = Date.now();
    const bundle = (seq: number, id: string, prev: string | null) =>
      writeImportBundle(
        vendor,
        {
          serverId: made.info.server_id,
          seq,
          prev,
          iatMs: now - 60_000,
          expMs: now + 86_400_000,
          ack: null,
        },
        contentRecords({ entitlements: [ent(id)] }),
        join(root, `b${seq}.bpsync`),
      );
    const first = bundle(1, 'ent_one', null);
    const second = bundle(2, 'ent_two', first.manifest_sha256);

    const cloud = await standIn();
    const lines: string[] = [];
    const log = createLogger({
      level: 'info',
      write: (t) => lines.push(...t.split('\n').filter(Boolean)),
    });
    const db = dataPaths(dataDir).db;
    expect(connectionsTo(db)).toBe(0);
    const server = await startServer(
      {
        dataDir,
        nativeCacheDir: join(root, 'cache'),
        host: '127.0.0.1',
        port: 0,
        durability: 'full',
        sync: { dir: syncDir, watch: true, url: cloud.url, pollMs: 20, intervalMs: 3_600_000 },
      },
      log,
    );
    let closed = false;
    try {
      expect(lines.some((l) => l.includes('"msg":"watching sync folder"'))).toBe(true);
      expect(lines.some((l) => l.includes('"msg":"outbound sync on"'))).toBe(true);
      renameSync(first.file, join(syncDir, 'inbox', 'b1.bpsync'));
      await until('the bundle to be processed', () =>
        existsSync(join(syncDir, 'processed', 'b1.bpsync')),
      );
      expect(server.ctx.services.entitlements.get('ent_one')).toMatchObject({
        id: 'ent_one',
        source: 'bundle',
      });
      // The outbound sync's first run (1 s after start) pulls (nothing newer) and pushes an export.
      await until('an export at the stand-in', () => cloud.exports.length === 1);
      expect(cloud.exports[0]!.seq).toBe('1');
      // The stand-in holds the export before the server has read its answer and logged it.
      await until('the delivery in the log', () =>
        lines.some((l) => l.includes('"msg":"sync push: export delivered"')),
      );
      // Both ran on the server's connection: no second one was opened.
      expect(connectionsTo(db)).toBe(1);
      expect(server.ctx.services.audit.verify().ok).toBe(true);

      await server.close();
      closed = true;
      expect(server.ctx.store.kind === 'sqlite' && server.ctx.store.db.open).toBe(false);
      expect(connectionsTo(db)).toBe(0);
      // Stopped: a bundle dropped now stays in the inbox.
      const logged = lines.length;
      renameSync(second.file, join(syncDir, 'inbox', 'b2.bpsync'));
      await sleep(300);
      expect(readdirSync(join(syncDir, 'inbox'))).toEqual(['b2.bpsync']);
      expect(readdirSync(join(syncDir, 'processed'))).toEqual(['b1.bpsync']);
      expect(lines.slice(logged)).toEqual([]);
    } finally {
      if (!closed) await server.close();
      await cloud.close();
    }
  });

  it('refuses a sync folder it cannot make for the outbox, and leaves nothing open', async () => {
    const dataDir = join(root, 'data2');
    initServer({
      dataDir,
      nativeCacheDir: join(root, 'cache'),
      durability: 'full',
      vendorKeys: [],
      force: false,
      actor: 'test',
      onNote: () => {},
    });
    const err = await startServer(
      {
        dataDir,
        nativeCacheDir: join(root, 'cache'),
        host: '127.0.0.1',
        port: 0,
        durability: 'full',
        // A file where the sync folder should be: its outbox cannot be made.
        sync: { dir: join(dataDir, 'server.json'), watch: false, url: 'http://127.0.0.1:9' },
      },
      createLogger({ level: 'error', write: () => {} }),
    ).then(
      () => undefined,
      (e: unknown) => e as NodeJS.ErrnoException,
    );
    expect(err?.code).toBe('ENOTDIR');
    expect(connectionsTo(dataPaths(dataDir).db)).toBe(0);
  });
});
