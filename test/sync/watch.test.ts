// The folder watch in process, polled by hand: what is taken, when, and where it goes; and that no
// state of the file system (names, mounts, permissions, vanishing files, floods) ends or stalls it.
import { execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  appendFileSync,
  copyFileSync,
} from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createWorld, ent, type World } from './world.ts';
import {
  looksIncomplete,
  MAX_MOVED_NAME_BYTES,
  movedName,
  startFolderSync,
  type FolderSync,
  type FolderSyncOptions,
} from '../../src/sync/watch.ts';
import { createLogger } from '../../src/log.ts';
import type { ImportResult } from '../../src/sync/import.ts';
import { commitWithoutFsync } from '../helpers.ts';

let w: World;
let watcher: FolderSync | undefined;
/** Mount points and immutable paths made by a test, undone before its folder is removed. */
const mounts: string[] = [];
const immutable: string[] = [];
afterEach(async () => {
  await watcher?.stop();
  watcher = undefined;
  try {
    for (const p of immutable.splice(0)) execFileSync('chattr', ['-i', p]);
    for (const m of mounts.splice(0).reverse()) execFileSync('umount', [m]);
  } finally {
    w?.h.close();
  }
});

function start(
  importFile?: (file: string, name: string) => Promise<ImportResult>,
  over: Partial<FolderSyncOptions> = {},
) {
  const dir = join(w.h.dir, 'sync');
  const lines: Array<Record<string, unknown>> = [];
  watcher = startFolderSync({
    dir,
    log: createLogger({ level: 'debug', write: (l) => lines.push(JSON.parse(l)) }),
    now: () => w.h.clock.now(),
    intervalMs: 3_600_000, // polled by hand below
    importFile:
      importFile ??
      ((file, name) => w.h.services.sync.importFile(file, { actor: 'sync-dir', name })),
    ...over,
  });
  const polls = async (n: number) => {
    for (let i = 0; i < n; i++) await watcher!.poll();
  };
  const ls = (folder: string) => readdirSync(join(dir, folder)).sort();
  const msgs = (msg: string) => lines.filter((l) => l.msg === msg);
  return { dir, inbox: join(dir, 'inbox'), lines, polls, ls, msgs };
}

/** Audit rows of refused imports: one per import attempt that was refused. */
const refusals = () =>
  (
    w.h.store.db
      .prepare("SELECT count(*) AS n FROM audit_log WHERE action = 'sync.import_rejected'")
      .get() as { n: number }
  ).n;

/** Mounts, or says why it cannot (then the test is skipped with that reason printed). */
function mount(args: string[], target: string, remount = false): string | undefined {
  try {
    execFileSync('mount', [...args, target], { stdio: 'pipe' });
    if (!remount) mounts.push(target);
    return undefined;
  } catch (err) {
    return `mount ${args.join(' ')} failed: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
  }
}

function makeImmutable(p: string): string | undefined {
  try {
    execFileSync('chattr', ['+i', p], { stdio: 'pipe' });
    immutable.push(p);
    return undefined;
  } catch (err) {
    return `chattr +i failed: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
  }
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
    expect(line).toMatchObject({
      level: 'info',
      file: 'b1.bpsync',
      seq: 1,
      status: 'applied',
      added: 1,
    });
    expect(JSON.stringify(s.lines)).not.toContain('ent_a'); // ids of the file, never its payload
    expect(JSON.parse(w.h.store.audit.page(0, 100).at(-1)!.details)).toMatchObject({
      file: 'b1.bpsync',
    });
    expect(w.h.store.audit.page(0, 100).at(-1)!.actor).toBe('sync-dir');
  });

  it('moves a refused bundle to rejected/ beside a .error.json that says why', async () => {
    w = createWorld();
    const s = start();
    copyFileSync(w.sign(1, {}, { serverId: 'srv_other' }), join(s.inbox, 'other.bpsync'));
    await s.polls(3);
    expect(s.ls('rejected')).toEqual(['other.bpsync', 'other.bpsync.error.json']);
    const report = JSON.parse(
      readFileSync(join(s.dir, 'rejected', 'other.bpsync.error.json'), 'utf8'),
    );
    expect(report).toMatchObject({
      code: 'bundle_rejected',
      rule: 'wrong_server',
      at: '2025-06-01T12:00:00.000Z',
      message: expect.stringMatching(/signed for server srv_other/),
    });
    expect(s.lines.find((l) => l.msg === 'sync bundle rejected')).toMatchObject({
      level: 'warn',
      file: 'other.bpsync',
      rule: 'wrong_server',
    });
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
      appendFileSync(
        target,
        bytes.subarray(200 + (i - 1) * 100, i < 5 ? 200 + i * 100 : bytes.length),
      );
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
    for (const name of ['.b1.bpsync', 'b1.bpsync.part', 'b1.txt', 'notes'])
      copyFileSync(file, join(s.inbox, name));
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
    expect(s.lines.filter((l) => l.msg === 'sync bundle imported').map((l) => l.status)).toEqual([
      'applied',
      'unchanged',
    ]);
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
    expect(s.lines.find((l) => l.level === 'error')).toMatchObject({
      msg: 'sync bundle could not be imported; will try again',
      file: 'b.bpsync',
    });
    await s.polls(1);
    expect(calls).toBe(1); // not before the retry delay
    w.h.clock.advance(61_000);
    await s.polls(1);
    expect(calls).toBe(2);
    expect(existsSync(join(s.dir, 'processed', 'b.bpsync'))).toBe(true);
  });
});

const STAMP = '2025-06-01T12-00-00-000Z'; // the world's clock, as a collision stamp

describe('folder sync: names', () => {
  it('a junk file with a 241-byte name is rejected under a name that fits, with its report, and again when dropped twice (issue 10.1)', async () => {
    w = createWorld();
    const s = start();
    const name = `${'x'.repeat(234)}.bpsync`;
    expect(Buffer.byteLength(name)).toBe(241);
    writeFileSync(join(s.inbox, name), 'junk\n');
    await s.polls(3);
    expect(s.ls('inbox')).toEqual([]);
    const first = s.ls('rejected');
    expect(first).toHaveLength(2);
    const moved = first.find((n) => n.endsWith('.bpsync'))!;
    expect(moved).toMatch(/^x+~[0-9a-f]{12}\.bpsync$/);
    expect(Buffer.byteLength(moved)).toBeLessThanOrEqual(MAX_MOVED_NAME_BYTES);
    const report = JSON.parse(readFileSync(join(s.dir, 'rejected', `${moved}.error.json`), 'utf8'));
    expect(report).toMatchObject({
      code: 'bundle_rejected',
      rule: 'malformed',
      file: name,
      message: expect.stringMatching(/does not start with/),
    });
    // The same name again collides with the first record: a stamp goes in, and it still fits.
    writeFileSync(join(s.inbox, name), 'junk again\n');
    await s.polls(3);
    expect(s.ls('inbox')).toEqual([]);
    const second = s.ls('rejected').filter((n) => !first.includes(n));
    expect(second).toHaveLength(2);
    expect(second.find((n) => n.endsWith('.bpsync'))).toMatch(
      new RegExp(`^x+~[0-9a-f]{12}\\.${STAMP}\\.bpsync$`),
    );
    expect(readFileSync(join(s.dir, 'rejected', moved), 'utf8')).toBe('junk\n'); // the first record kept
    expect(s.msgs('sync bundle rejected')).toHaveLength(2);
    expect(s.lines.filter((l) => l.level === 'error')).toEqual([]);
    expect(refusals()).toBe(2);
  });

  it('every name length up to 255 bytes, ASCII or not, dropped twice, ends in rejected/ or processed/ with its report', async () => {
    w = createWorld();
    const s = start();
    const names = [200, 225, 226, 232, 233, 240, 241, 248, 255].map(
      (n) => `${'n'.repeat(n - 7 - String(n).length)}${n}.bpsync`,
    );
    names.push(`${'é'.repeat(124)}.bpsync`); // 255 bytes, 131 characters
    for (const round of [1, 2]) {
      for (const n of names) writeFileSync(join(s.inbox, n), `junk ${round}\n`);
      await s.polls(3);
      expect(s.ls('inbox')).toEqual([]);
    }
    const rejected = s.ls('rejected');
    expect(rejected.filter((n) => n.endsWith('.bpsync'))).toHaveLength(names.length * 2);
    for (const n of rejected.filter((x) => x.endsWith('.bpsync'))) {
      expect(Buffer.byteLength(n)).toBeLessThanOrEqual(MAX_MOVED_NAME_BYTES);
      expect(rejected).toContain(`${n}.error.json`);
    }
    expect(rejected.filter((n) => n.includes('é')).every((n) => !n.includes('\uFFFD'))).toBe(true); // never cut inside a character
    expect(s.lines.filter((l) => l.level === 'error')).toEqual([]);
    expect(refusals()).toBe(names.length * 2);
    // A good bundle with a long name is imported and kept in processed/ under a name that fits.
    const long = `${'b'.repeat(248)}.bpsync`;
    copyFileSync(w.sign(1, { entitlements: [ent('ent_a')] }), join(s.inbox, long));
    await s.polls(3);
    expect(s.ls('processed')).toEqual([movedName(long)]);
    expect(Object.keys(w.bundleState())).toEqual(['ent_a']);
  });

  it('never overwrites what is in processed/ or rejected/: stamps, then counters, past files and folders of the same name', async () => {
    w = createWorld();
    const s = start();
    writeFileSync(join(s.dir, 'processed', 'b.bpsync'), 'older record\n');
    writeFileSync(join(s.dir, 'processed', `b.${STAMP}.bpsync`), 'another\n');
    mkdirSync(join(s.dir, 'processed', `b.${STAMP}-2.bpsync`));
    copyFileSync(w.sign(1, { entitlements: [ent('ent_a')] }), join(s.inbox, 'b.bpsync'));
    await s.polls(3);
    expect(s.ls('processed')).toEqual([
      `b.${STAMP}-2.bpsync`,
      `b.${STAMP}-3.bpsync`,
      `b.${STAMP}.bpsync`,
      'b.bpsync',
    ]);
    expect(readFileSync(join(s.dir, 'processed', 'b.bpsync'), 'utf8')).toBe('older record\n');
    expect(s.msgs('sync bundle imported')[0]).toMatchObject({
      file: 'b.bpsync',
      moved_to: `processed/b.${STAMP}-3.bpsync`,
      status: 'applied',
    });
  });

  it('movedName: its own name when it fits; a prefix and a hash when not; a hash alone when asked', () => {
    expect(movedName('b1.bpsync')).toBe('b1.bpsync');
    expect(movedName('b1.bpsync', { stamp: 'S', n: 3 })).toBe('b1.S-3.bpsync');
    const long = `${'y'.repeat(300)}.bpsync`;
    expect(Buffer.byteLength(movedName(long))).toBe(MAX_MOVED_NAME_BYTES);
    expect(movedName(long)).not.toBe(movedName(`${'y'.repeat(301)}.bpsync`));
    expect(movedName(long, { short: true })).toMatch(/^[0-9a-f]{16}\.bpsync$/);
  });
});

describe('folder sync: file systems and permissions', () => {
  it('moves across file systems (processed/ and rejected/ on another mount: EXDEV), and a move that fails is not imported again', async (ctx) => {
    w = createWorld();
    const s = start();
    const why =
      mount(['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs'], join(s.dir, 'processed')) ??
      mount(['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs'], join(s.dir, 'rejected'));
    if (why) {
      console.log(`skipped: ${why}`);
      ctx.skip();
    }
    copyFileSync(w.sign(1, { entitlements: [ent('ent_a')] }), join(s.inbox, 'b1.bpsync'));
    writeFileSync(join(s.inbox, 'junk.bpsync'), 'junk\n');
    await s.polls(3);
    expect(s.ls('inbox')).toEqual([]);
    expect(s.ls('processed')).toEqual(['b1.bpsync']);
    expect(s.ls('rejected')).toEqual(['junk.bpsync', 'junk.bpsync.error.json']);
    expect(Object.keys(w.bundleState())).toEqual(['ent_a']);
    // rejected/ full: the copy fails (ENOSPC), the file stays, it is refused once, logged once.
    writeFileSync(join(s.dir, 'rejected', 'filler'), Buffer.alloc(1024 * 1024 - 64 * 1024));
    writeFileSync(join(s.inbox, 'big.bpsync'), Buffer.alloc(200 * 1024, 'j'));
    const before = refusals();
    await s.polls(10);
    w.h.clock.advance(61_000); // the move is tried again (not the import)
    await s.polls(3);
    expect(s.ls('inbox')).toEqual(['big.bpsync']);
    expect(refusals()).toBe(before + 1);
    const stuck = s.lines.filter((l) => l.level === 'error');
    expect(stuck).toHaveLength(1);
    expect(stuck[0]).toMatchObject({
      msg: 'sync bundle could not be moved to rejected/; it stays in the inbox and will not be imported again',
      file: 'big.bpsync',
      code: 'ENOSPC',
      rule: 'malformed',
    });
    expect(s.ls('rejected').filter((n) => n.startsWith('.'))).toEqual([]); // no half copy left
    // Room again: the next retry moves it, with its report, still without a second import.
    rmSync(join(s.dir, 'rejected', 'filler'));
    w.h.clock.advance(61_000);
    await s.polls(1);
    expect(s.ls('inbox')).toEqual([]);
    expect(s.ls('rejected')).toContain('big.bpsync.error.json');
    expect(refusals()).toBe(before + 1);
  });

  for (const [label, folder] of [
    ['rejected/ immutable (EPERM)', 'rejected'],
    ['the inbox immutable (EPERM)', 'inbox'],
  ] as const)
    it(`${label}: the file stays, imported once, logged once, and moves once it can`, async (ctx) => {
      w = createWorld();
      const s = start();
      writeFileSync(join(s.inbox, 'junk.bpsync'), 'junk\n');
      await s.polls(2);
      const why = makeImmutable(join(s.dir, folder));
      if (why) {
        console.log(`skipped: ${why}`);
        ctx.skip();
      }
      await s.polls(10);
      w.h.clock.advance(61_000);
      await s.polls(5);
      expect(s.ls('inbox')).toEqual(['junk.bpsync']);
      expect(refusals()).toBe(1);
      expect(s.lines.filter((l) => l.level === 'error')).toEqual([
        expect.objectContaining({ file: 'junk.bpsync', code: 'EPERM' }),
      ]);
      execFileSync('chattr', ['-i', join(s.dir, folder)]);
      immutable.length = 0;
      w.h.clock.advance(61_000);
      await s.polls(1);
      expect(s.ls('inbox')).toEqual([]);
      expect(s.ls('rejected')).toEqual(['junk.bpsync', 'junk.bpsync.error.json']);
      expect(refusals()).toBe(1);
    });

  it('a read-only inbox (a read-only bind mount: EXDEV, then EROFS removing the original) keeps one copy only, in the inbox', async (ctx) => {
    w = createWorld();
    const s = start();
    writeFileSync(join(s.inbox, 'junk.bpsync'), 'junk\n');
    const why =
      mount(['--bind', s.inbox], s.inbox) ?? mount(['-o', 'remount,bind,ro'], s.inbox, true);
    if (why) {
      console.log(`skipped: ${why}`);
      ctx.skip();
    }
    await s.polls(6);
    expect(s.ls('inbox')).toEqual(['junk.bpsync']);
    expect(s.ls('rejected')).toEqual([]);
    expect(refusals()).toBe(1);
    expect(s.lines.filter((l) => l.level === 'error')).toEqual([
      expect.objectContaining({ file: 'junk.bpsync', code: 'EROFS' }),
    ]);
  });

  it('the inbox removed, replaced by a file, then back: one line per state, then it imports again', async () => {
    w = createWorld();
    const s = start();
    rmSync(s.inbox, { recursive: true });
    await s.polls(3);
    writeFileSync(s.inbox, 'not a folder');
    await s.polls(3);
    expect(s.lines.filter((l) => l.level === 'error').map((l) => l.code)).toEqual([
      'ENOENT',
      'ENOTDIR',
    ]);
    rmSync(s.inbox);
    mkdirSync(s.inbox);
    rmSync(join(s.dir, 'processed'), { recursive: true }); // ours: made again for the move
    copyFileSync(w.sign(1, { entitlements: [ent('ent_a')] }), join(s.inbox, 'b1.bpsync'));
    await s.polls(3);
    expect(s.msgs('the sync inbox can be read again')).toHaveLength(1);
    expect(s.ls('processed')).toEqual(['b1.bpsync']);
  });

  it('directories, symlinks and FIFOs named *.bpsync are left alone with one line each, and never block', async () => {
    w = createWorld();
    const s = start();
    mkdirSync(join(s.inbox, 'dir.bpsync'));
    symlinkSync(w.sign(1, { entitlements: [ent('ent_x')] }), join(s.inbox, 'link.bpsync'));
    execFileSync('mkfifo', [join(s.inbox, 'fifo.bpsync')]);
    copyFileSync(w.sign(1, { entitlements: [ent('ent_a')] }), join(s.inbox, 'real.bpsync'));
    await s.polls(6);
    expect(s.ls('inbox')).toEqual(['dir.bpsync', 'fifo.bpsync', 'link.bpsync']);
    expect(s.ls('processed')).toEqual(['real.bpsync']);
    expect(Object.keys(w.bundleState())).toEqual(['ent_a']);
    expect(
      s
        .msgs('sync inbox entry is not a regular file; left alone')
        .map((l) => l.file)
        .sort(),
    ).toEqual(['dir.bpsync', 'fifo.bpsync', 'link.bpsync']);
  });

  it('files vanishing before the import, or after it and before the move, are let go quietly', async () => {
    w = createWorld();
    let n = 0;
    const s = start(async (file, name) => {
      n++;
      if (name === 'gone-before.bpsync') rmSync(file);
      const r = await w.h.services.sync.importFile(file, { actor: 'sync-dir', name });
      if (name === 'gone-after.bpsync') rmSync(file);
      return r;
    });
    writeFileSync(join(s.inbox, 'gone-before.bpsync'), 'junk\n');
    copyFileSync(w.sign(1, { entitlements: [ent('ent_a')] }), join(s.inbox, 'gone-after.bpsync'));
    await s.polls(6);
    expect(n).toBe(2);
    expect(s.ls('inbox')).toEqual([]);
    expect(s.ls('processed')).toEqual([]);
    expect(s.msgs('sync bundle imported')).toEqual([
      expect.objectContaining({ file: 'gone-after.bpsync', moved_to: null, status: 'applied' }),
    ]);
    expect(s.lines.filter((l) => l.level === 'error')).toEqual([]);
    expect(Object.keys(w.bundleState())).toEqual(['ent_a']);
  });

  it(
    'a flood of 20,000 junk files is rejected in bounded polls without stalling the event loop',
    { timeout: 600_000 },
    async () => {
      w = createWorld();
      // The audit row of each refusal commits without waiting for fsync (--durability normal): an
      // fsync on a disk shared by other jobs can take 100 ms, and is the storage's to bound, not the
      // watcher's; what this measures is the watcher's own work between turns.
      commitWithoutFsync(w.h.store);
      const s = start();
      const N = 20_000;
      for (let i = 0; i < N; i++)
        writeFileSync(join(s.inbox, `junk-${String(i).padStart(5, '0')}.bpsync`), 'junk\n');
      // A sibling process ticking alone measures what the machine itself does to a process (being
      // descheduled on a busy machine): the watcher is held to 150 ms, or to that plus 50 ms.
      const sibling = spawn(
        process.execPath,
        [
          '-e',
          'let l=performance.now(),m=0;const t=setInterval(()=>{const n=performance.now();m=Math.max(m,n-l);l=n},5);process.stdin.on("end",()=>{clearInterval(t);process.stdout.write(String(m))}).resume()',
        ],
        { stdio: ['pipe', 'pipe', 'inherit'] },
      );
      let siblingOut = '';
      sibling.stdout.setEncoding('utf8').on('data', (d: string) => (siblingOut += d));
      const siblingDone = new Promise((r) => sibling.once('close', r));
      let last = performance.now();
      const gaps: number[] = [];
      const ticker = setInterval(() => {
        const t = performance.now();
        gaps.push(t - last);
        last = t;
      }, 5);
      const started = performance.now();
      let polls = 0;
      try {
        // (async: a readdirSync of 20,000 names here would be the test's own stall)
        while ((await readdir(s.inbox)).length > 0 && polls < 200) {
          await s.polls(1);
          polls++;
        }
      } finally {
        clearInterval(ticker);
        sibling.stdin.end();
        await siblingDone;
      }
      const machineMax = Number(siblingOut);
      const secs = (performance.now() - started) / 1000;
      gaps.sort((a, b) => a - b);
      const maxGap = gaps.at(-1)!;
      // Bounded well above the ~50 ms goal: on a 2-core machine shared with other jobs a process is
      // descheduled for tens of ms at times (measured here at load 8: max 83-130 ms, p99 10-17 ms).
      console.log(
        `20,000 junk files: ${polls} polls, ${secs.toFixed(1)} s, event loop gap p99 ${gaps[Math.floor(gaps.length * 0.99)]!.toFixed(1)} ms, max ${maxGap.toFixed(1)} ms (an idle sibling process: max ${machineMax.toFixed(1)} ms)`,
      );
      expect(readdirSync(s.inbox)).toEqual([]);
      expect(readdirSync(join(s.dir, 'rejected'))).toHaveLength(2 * N);
      expect(refusals()).toBe(N);
      expect(s.lines.filter((l) => l.level === 'error')).toEqual([]);
      expect(Number.isFinite(machineMax)).toBe(true);
      expect(maxGap).toBeLessThan(Math.max(150, machineMax + 50));
    },
  );
});

describe('folder sync: copies in progress (issue 11.8)', () => {
  async function halfThenRest(cut: (bytes: Buffer) => number) {
    w = createWorld();
    const s = start();
    const bytes = readFileSync(w.sign(1, { entitlements: [ent('ent_a'), ent('ent_b')] }));
    const target = join(s.inbox, 'slow.bpsync');
    writeFileSync(target, bytes.subarray(0, cut(bytes)));
    await s.polls(10); // paused far longer than the stable window
    w.h.clock.advance(9 * 60_000);
    await s.polls(3);
    expect(s.ls('inbox')).toEqual(['slow.bpsync']);
    expect(s.ls('rejected')).toEqual([]);
    expect(refusals()).toBe(0);
    expect(s.msgs('sync bundle is incomplete; waiting for the rest of it')).toHaveLength(1);
    appendFileSync(target, bytes.subarray(cut(bytes)));
    await s.polls(3);
    expect(s.ls('inbox')).toEqual([]);
    expect(s.ls('processed')).toEqual(['slow.bpsync']);
    expect(Object.keys(w.bundleState())).toEqual(['ent_a', 'ent_b']);
    return s;
  }

  it('a copy paused inside the payload is waited for, then imported', async () => {
    await halfThenRest((b) => b.length - 40);
  });
  it('a copy paused inside the manifest line is waited for, then imported', async () => {
    await halfThenRest(() => 60);
  });
  it('a copy paused inside the magic line, or not started (empty), is waited for, then imported', async () => {
    await halfThenRest(() => 4);
    w.h.close();
    await watcher?.stop();
    await halfThenRest(() => 0);
  });

  it('a copy that sets the size first (zeros) and fills it in later is waited for, then imported', async () => {
    w = createWorld();
    const s = start();
    const bytes = readFileSync(w.sign(1, { entitlements: [ent('ent_a')] }));
    const target = join(s.inbox, 'pre.bpsync');
    for (const cut of [0, 30, Math.floor(bytes.length / 2), bytes.length - 10]) {
      writeFileSync(
        target,
        Buffer.concat([bytes.subarray(0, cut), Buffer.alloc(bytes.length - cut)]),
      );
      await s.polls(6);
      expect(s.ls('inbox'), `cut at ${cut}`).toEqual(['pre.bpsync']);
    }
    expect(refusals()).toBe(0);
    writeFileSync(target, bytes);
    await s.polls(3);
    expect(s.ls('processed')).toEqual(['pre.bpsync']);
    expect(Object.keys(w.bundleState())).toEqual(['ent_a']);
  });

  it('a copy that never finishes is refused as truncated only after the quiet period, counted from its last change', async () => {
    w = createWorld();
    const s = start(undefined, { quietMs: 120_000 });
    const bytes = readFileSync(w.sign(1, { entitlements: [ent('ent_a')] }));
    const target = join(s.inbox, 'cut.bpsync');
    writeFileSync(target, bytes.subarray(0, bytes.length - 10));
    await s.polls(3);
    w.h.clock.advance(100_000);
    appendFileSync(target, bytes.subarray(bytes.length - 10, bytes.length - 5)); // it grew: the wait starts again
    await s.polls(3);
    w.h.clock.advance(100_000);
    await s.polls(3);
    expect(s.ls('inbox')).toEqual(['cut.bpsync']);
    w.h.clock.advance(21_000);
    await s.polls(1);
    expect(s.ls('inbox')).toEqual([]);
    expect(s.ls('rejected')).toEqual(['cut.bpsync', 'cut.bpsync.error.json']);
    const report = JSON.parse(
      readFileSync(join(s.dir, 'rejected', 'cut.bpsync.error.json'), 'utf8'),
    );
    expect(report).toMatchObject({
      rule: 'malformed',
      message: expect.stringMatching(/truncated/),
    });
    expect(refusals()).toBe(1);
  });

  it('a bundle longer than its manifest says, or junk, is refused at once (no wait)', async () => {
    w = createWorld();
    const s = start();
    copyFileSync(w.sign(1, { entitlements: [ent('ent_a')] }), join(s.inbox, 'long.bpsync'));
    appendFileSync(join(s.inbox, 'long.bpsync'), '{"op":"extra"}\n');
    writeFileSync(join(s.inbox, 'junk.bpsync'), 'BPSYNX');
    await s.polls(3);
    expect(s.ls('rejected')).toEqual([
      'junk.bpsync',
      'junk.bpsync.error.json',
      'long.bpsync',
      'long.bpsync.error.json',
    ]);
  });

  it('looksIncomplete reads the structure only', () => {
    const bytes = readFileSync((w = createWorld()).sign(1, { entitlements: [ent('ent_a')] }));
    expect(looksIncomplete(Buffer.alloc(0), 0)).toBe('the file is empty');
    expect(looksIncomplete(Buffer.from('BPSY'), 4)).toMatch(/magic/);
    expect(looksIncomplete(Buffer.from('BPSX'), 4)).toBeUndefined();
    expect(looksIncomplete(bytes.subarray(0, 50), 50)).toMatch(/manifest line/);
    expect(looksIncomplete(Buffer.from('BPSYNC/1\nv4.public.abc def'), 26)).toBeUndefined();
    expect(looksIncomplete(bytes, bytes.length - 1)).toMatch(/payload has/);
    expect(looksIncomplete(bytes, bytes.length)).toBeUndefined();
    expect(looksIncomplete(bytes, bytes.length, 0x0a)).toBeUndefined();
    expect(looksIncomplete(bytes, bytes.length, 0)).toMatch(/zeros/);
    expect(looksIncomplete(Buffer.alloc(100), 1000, 0)).toMatch(/zeros/); // nothing written yet
    expect(
      looksIncomplete(
        Buffer.concat([Buffer.from('BPSYNC/1\nv4.public.'), Buffer.alloc(50)]),
        1000,
        0,
      ),
    ).toMatch(/zeros/);
    expect(
      looksIncomplete(
        Buffer.concat([Buffer.from('BPSYNC/1\nv4.public.'), Buffer.alloc(50)]),
        1000,
        0x41,
      ),
    ).toBeUndefined(); // zeros, then bytes: junk
    expect(looksIncomplete(Buffer.from('BPSYNC/1\nv4.public.a\u0000b'), 22, 0x62)).toBeUndefined();
    expect(looksIncomplete(bytes, bytes.length + 1)).toBeUndefined();
  });
});

describe('names that are not UTF-8', () => {
  it('says once that an inbox file with a name that is not UTF-8 cannot be imported, and goes on with the others', async () => {
    w = createWorld();
    const t = start();
    const bad = Buffer.concat([
      Buffer.from(join(t.inbox, 'bad')),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('name.bpsync'),
    ]);
    writeFileSync(bad, 'junk');
    writeFileSync(join(t.inbox, 'junk.bpsync'), 'junk');
    await t.polls(4);
    expect(
      t.msgs('a file in the sync inbox has a name that is not UTF-8; rename it to import it'),
    ).toHaveLength(1);
    // The other file was taken (refused as junk and moved), the undecodable one stays where it is.
    expect(t.ls('rejected').some((f) => f.startsWith('junk.bpsync'))).toBe(true);
    expect(
      readdirSync(Buffer.from(t.inbox), { encoding: 'buffer' }).some((b) =>
        b.equals(bad.subarray(Buffer.from(t.inbox).length + 1)),
      ),
    ).toBe(true);
  });
});
