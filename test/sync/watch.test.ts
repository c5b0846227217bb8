// The folder watch in process, polled by hand: what is taken, when, and where it goes.
import { existsSync, readdirSync, readFileSync, writeFileSync, appendFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createWorld, ent, type World } from './world.ts';
import { startFolderSync, type FolderSync } from '../../src/sync/watch.ts';
import { createLogger } from '../../src/log.ts';
import type { ImportResult } from '../../src/sync/import.ts';

let w: World;
let watcher: FolderSync | undefined;
afterEach(async () => {
  await watcher?.stop();
  watcher = undefined;
  w?.h.close();
});

function start(importFile?: (file: string, name: string) => Promise<ImportResult>) {
  const dir = join(w.h.dir, 'sync');
  const lines: Array<Record<string, unknown>> = [];
  watcher = startFolderSync({
    dir,
    log: createLogger({ level: 'debug', write: (l) => lines.push(JSON.parse(l)) }),
    now: () => w.h.clock.now(),
    intervalMs: 3_600_000, // polled by hand below
    importFile: importFile ?? ((file, name) => w.h.services.sync.importFile(file, { actor: 'sync-dir', name })),
  });
  const polls = async (n: number) => {
    for (let i = 0; i < n; i++) await watcher!.poll();
  };
  const ls = (folder: string) => readdirSync(join(dir, folder)).sort();
  return { dir, inbox: join(dir, 'inbox'), lines, polls, ls };
}

describe('folder sync', () => {
  it('creates the four folders, imports a bundle once it is stable, and moves it to processed/', async () => {
    w = createWorld();
    const s = start();
    expect(readdirSync(s.dir).sort()).toEqual(['inbox', 'outbox', 'processed', 'rejected']);
    copyFileSync(w.sign(1, { entitlements: [ent('ent_a')] }), join(s.inbox, 'b1.bpsync'));
    await s.polls(2);
    expect(s.ls('inbox')).toEqual(['b1.bpsync']);
    expect(w.bundleState()).toEqual({});
    await s.polls(1);
    expect(s.ls('inbox')).toEqual([]);
    expect(s.ls('processed')).toEqual(['b1.bpsync']);
    expect(Object.keys(w.bundleState())).toEqual(['ent_a']);
    const line = s.lines.find((l) => l.msg === 'sync bundle imported');
    expect(line).toMatchObject({ level: 'info', file: 'b1.bpsync', seq: 1, status: 'applied', added: 1 });
    expect(JSON.stringify(s.lines)).not.toContain('ent_a'); // ids of the file, never its payload
    expect(JSON.parse(w.h.store.audit.page(0, 100).at(-1)!.details)).toMatchObject({ file: 'b1.bpsync' });
    expect(w.h.store.audit.page(0, 100).at(-1)!.actor).toBe('sync-dir');
  });

  it('moves a refused bundle to rejected/ beside a .error.json that says why', async () => {
    w = createWorld();
    const s = start();
    copyFileSync(w.sign(1, {}, { serverId: 'srv_other' }), join(s.inbox, 'other.bpsync'));
    await s.polls(3);
    expect(s.ls('rejected')).toEqual(['other.bpsync', 'other.bpsync.error.json']);
    const report = JSON.parse(readFileSync(join(s.dir, 'rejected', 'other.bpsync.error.json'), 'utf8'));
    expect(report).toMatchObject({ code: 'bundle_rejected', rule: 'wrong_server', at: '2025-06-01T12:00:00.000Z', message: expect.stringMatching(/signed for server srv_other/) });
    expect(s.lines.find((l) => l.msg === 'sync bundle rejected')).toMatchObject({ level: 'warn', file: 'other.bpsync', rule: 'wrong_server' });
    expect(w.h.store.audit.page(0, 100).at(-1)!.action).toBe('sync.import_rejected');
  });

  it('does not read a file that is still being copied until it stops changing', async () => {
    w = createWorld();
    const s = start();
    const bytes = readFileSync(w.sign(1, { entitlements: [ent('ent_a'), ent('ent_b')] }));
    const target = join(s.inbox, 'slow.bpsync');
    writeFileSync(target, bytes.subarray(0, 200));
    for (let i = 1; i < 6; i++) {
      await s.polls(1);
      appendFileSync(target, bytes.subarray(200 + (i - 1) * 100, i < 5 ? 200 + i * 100 : bytes.length));
    }
    await s.polls(2);
    expect(s.ls('inbox')).toEqual(['slow.bpsync']);
    expect(s.ls('rejected')).toEqual([]);
    await s.polls(1);
    expect(s.ls('processed')).toEqual(['slow.bpsync']);
    expect(Object.keys(w.bundleState())).toEqual(['ent_a', 'ent_b']);
  });

  it('ignores dotfiles, *.part and other names', async () => {
    w = createWorld();
    const s = start();
    const file = w.sign(1, { entitlements: [ent('ent_a')] });
    for (const name of ['.b1.bpsync', 'b1.bpsync.part', 'b1.txt', 'notes']) copyFileSync(file, join(s.inbox, name));
    await s.polls(4);
    expect(s.ls('inbox')).toEqual(['.b1.bpsync', 'b1.bpsync.part', 'b1.txt', 'notes']);
    expect(w.bundleState()).toEqual({});
  });

  it('keeps an earlier record of the same name, and treats the same bundle again as done', async () => {
    w = createWorld();
    const s = start();
    const file = w.sign(1, { entitlements: [ent('ent_a')] });
    copyFileSync(file, join(s.inbox, 'b.bpsync'));
    await s.polls(3);
    copyFileSync(file, join(s.inbox, 'b.bpsync'));
    await s.polls(3);
    const processed = s.ls('processed');
    expect(processed).toHaveLength(2);
    expect(processed).toContain('b.bpsync');
    expect(s.lines.filter((l) => l.msg === 'sync bundle imported').map((l) => l.status)).toEqual(['applied', 'unchanged']);
  });

  it('leaves a file in the inbox when the import fails for another reason, and tries again later', async () => {
    w = createWorld();
    let calls = 0;
    const s = start(async (file, name) => {
      calls++;
      if (calls === 1) throw new Error('database is locked');
      return w.h.services.sync.importFile(file, { actor: 'sync-dir', name });
    });
    copyFileSync(w.sign(1, { entitlements: [ent('ent_a')] }), join(s.inbox, 'b.bpsync'));
    await s.polls(3);
    expect(s.ls('inbox')).toEqual(['b.bpsync']);
    expect(s.lines.find((l) => l.level === 'error')).toMatchObject({ msg: 'sync bundle could not be imported; will try again', file: 'b.bpsync' });
    await s.polls(1);
    expect(calls).toBe(1); // not before the retry delay
    w.h.clock.advance(61_000);
    await s.polls(1);
    expect(calls).toBe(2);
    expect(existsSync(join(s.dir, 'processed', 'b.bpsync'))).toBe(true);
  });
});
