// The sync inbox under the real `serve`: nothing dropped in it, and no state of its folders, ends
// the process (issue 10.1), and a bundle copied slowly is imported, not rejected (issue 11.8).
import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI, killStrays, runProcess, startServe, type ServeHandle } from '../spawn.ts';
import { vendorSignArgs } from './world.ts';

let root: string;
let vendor: { secret_key_file: string; public_key: string };
let server: ServeHandle | undefined;
let n = 0;

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'bpls-inbox-e2e-'));
  const r = await runProcess(
    CLI,
    ['vendor', 'keygen', '--out', path.join(root, 'vendor'), '--json'],
    { cwd: root },
  );
  expect(r.code, r.stderr).toBe(0);
  vendor = JSON.parse(r.stdout);
});
afterEach(async () => {
  if (server && server.child.exitCode === null && server.child.signalCode === null)
    await server.stop();
  server = undefined;
});
afterAll(() => {
  killStrays();
  rmSync(root, { recursive: true, force: true });
});

/** A fresh data dir (initialised with the vendor key) and sync dir. */
async function fresh(): Promise<{ dataDir: string; syncDir: string; serverId: string }> {
  const dataDir = path.join(root, `data${++n}`);
  const syncDir = path.join(root, `sync${n}`);
  const r = await runProcess(
    CLI,
    ['init', '--vendor-key', vendor.public_key, '--data-dir', dataDir, '--json'],
    { cwd: root },
  );
  expect(r.code, r.stderr).toBe(0);
  for (const f of ['inbox', 'processed', 'rejected'])
    mkdirSync(path.join(syncDir, f), { recursive: true });
  return { dataDir, syncDir, serverId: JSON.parse(r.stdout).server_id };
}

async function signBundle(serverId: string, out: string): Promise<Buffer> {
  const content = path.join(root, `content${n}.json`);
  const ents = ['ent_a', 'ent_b'].map((id) => ({
    entitlement_id: id,
    tenant_id: 'acme',
    product_id: 'cad',
    policy_json: { type: 'concurrent', max_seats: 2 },
    starts_at: '2024-01-01T00:00:00Z',
    ends_at: '2099-01-01T00:00:00Z',
    rev: 1,
  }));
  writeFileSync(content, JSON.stringify({ entitlements: ents }));
  const r = await runProcess(
    CLI,
    [
      ...vendorSignArgs({ key: vendor.secret_key_file, serverId, seq: 1, in: content, out }),
      '--json',
    ],
    { cwd: root },
  );
  expect(r.code, r.stderr).toBe(0);
  return readFileSync(out);
}

const serveArgs = (d: { dataDir: string; syncDir: string }, more: string[] = []) => [
  '--data-dir',
  d.dataDir,
  '--port',
  '0',
  '--sync-dir',
  d.syncDir,
  '--sync-poll-ms',
  '100',
  ...more,
];

async function waitFor(what: string, check: () => boolean, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (server && (server.child.exitCode !== null || server.child.signalCode !== null))
      throw new Error(`serve ended while waiting for ${what}\nstderr: ${server.stderr()}`);
    if (Date.now() > until)
      throw new Error(`timed out waiting for ${what}\nstderr: ${server?.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The server answers, several times over a few polls, and is still running. */
async function answers(s: ServeHandle, forMs = 600): Promise<void> {
  const until = Date.now() + forMs;
  do {
    const res = await fetch(`${s.base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
    await new Promise((r) => setTimeout(r, 100));
  } while (Date.now() < until);
  expect(s.child.exitCode).toBeNull();
}

const logLines = (s: ServeHandle) =>
  s
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
const ls = (dir: string) => readdirSync(dir).sort();

describe('serve with the sync inbox (issue 10.1)', () => {
  it('a junk file with a 241-byte name, and a shorter one dropped twice, are rejected; serve stays up and restarts cleanly', async () => {
    const d = await fresh();
    const inbox = path.join(d.syncDir, 'inbox');
    const long = `${'x'.repeat(234)}.bpsync`;
    const shorter = `${'y'.repeat(229)}.bpsync`; // 236 bytes: its collision stamp made 261 before
    expect(Buffer.byteLength(long)).toBe(241);
    writeFileSync(path.join(inbox, long), 'junk\n');
    writeFileSync(path.join(d.syncDir, 'rejected', shorter), 'dropped before\n');
    writeFileSync(path.join(inbox, shorter), 'dropped again\n');
    server = await startServe(CLI, serveArgs(d), { cwd: root });
    await waitFor(
      'both files to leave the inbox',
      () =>
        readdirSync(inbox).length === 0 &&
        logLines(server!).filter((l) => l.msg === 'sync bundle rejected').length === 2,
    );
    await answers(server);
    const rejected = ls(path.join(d.syncDir, 'rejected'));
    const bundles = rejected.filter((f) => f.endsWith('.bpsync'));
    expect(bundles).toHaveLength(3);
    for (const b of bundles) expect(Buffer.byteLength(b)).toBeLessThanOrEqual(240);
    expect(readFileSync(path.join(d.syncDir, 'rejected', shorter), 'utf8')).toBe(
      'dropped before\n',
    ); // never overwritten
    const reports = rejected
      .filter((f) => f.endsWith('.error.json'))
      .map((f) => JSON.parse(readFileSync(path.join(d.syncDir, 'rejected', f), 'utf8')));
    expect(reports.map((r) => r.file).sort()).toEqual([long, shorter].sort());
    for (const r of reports)
      expect(r).toMatchObject({ code: 'bundle_rejected', rule: 'malformed' });
    expect(logLines(server).filter((l) => l.level === 'error')).toEqual([]);
    // The long name again, then a restart with it in the inbox.
    writeFileSync(path.join(inbox, long), 'junk 2\n');
    await waitFor('the second drop to leave the inbox', () => readdirSync(inbox).length === 0);
    await answers(server);
    expect(await server.stop()).toEqual({ code: 0, signal: null });
    writeFileSync(path.join(inbox, long), 'junk 3\n');
    server = await startServe(CLI, serveArgs(d), { cwd: root });
    await waitFor('the third drop to leave the inbox', () => readdirSync(inbox).length === 0);
    await answers(server, 1000);
    expect(
      ls(path.join(d.syncDir, 'rejected')).filter((f) => f.endsWith('.error.json')),
    ).toHaveLength(4);
    expect(await server.stop()).toEqual({ code: 0, signal: null });
  });

  it('without permission (root without CAP_DAC_OVERRIDE): a rejected/ it cannot write and an inbox it cannot read are logged once, and it serves on', async (ctx) => {
    // Root ignores mode bits; dropping the capabilities that let it makes them count (setpriv, util-linux).
    const drop = ['--bounding-set', '-dac_override,-dac_read_search,-fowner', '--inh-caps=-all'];
    const setpriv: [string, string[]] = ['setpriv', [...drop, CLI[0], ...CLI[1]]];
    try {
      const probe = path.join(root, 'probe');
      mkdirSync(probe, { mode: 0o500 });
      const out = execFileSync('setpriv', [
        ...drop,
        'sh',
        '-c',
        `touch '${probe}/x' 2>/dev/null && echo writable || echo denied`,
      ])
        .toString()
        .trim();
      if (out !== 'denied') throw new Error('mode bits are not enforced under setpriv');
    } catch (err) {
      console.log(`skipped: cannot run serve without CAP_DAC_OVERRIDE here: ${String(err)}`);
      ctx.skip();
    }
    const d = await fresh();
    const inbox = path.join(d.syncDir, 'inbox');
    const rejectedDir = path.join(d.syncDir, 'rejected');
    writeFileSync(path.join(inbox, 'junk.bpsync'), 'junk\n');
    chmodSync(rejectedDir, 0o555);
    try {
      server = await startServe(setpriv, serveArgs(d), { cwd: root });
      await waitFor('the move to fail', () => logLines(server!).some((l) => l.level === 'error'));
      await answers(server, 1000);
      expect(ls(inbox)).toEqual(['junk.bpsync']);
      chmodSync(inbox, 0o333); // no listing
      await waitFor('the inbox to be unreadable', () =>
        logLines(server!).some((l) => l.msg === 'cannot read the sync inbox; will keep trying'),
      );
      await answers(server, 1000);
      const errors = logLines(server).filter((l) => l.level === 'error');
      expect(errors).toEqual([
        expect.objectContaining({
          msg: 'sync bundle could not be moved to rejected/; it stays in the inbox and will not be imported again',
          file: 'junk.bpsync',
          code: 'EACCES',
        }),
        expect.objectContaining({
          msg: 'cannot read the sync inbox; will keep trying',
          code: 'EACCES',
        }),
      ]);
      expect(logLines(server).filter((l) => l.msg === 'sync bundle rejected')).toEqual([]);
      chmodSync(inbox, 0o755);
      await waitFor('the inbox to be readable again', () =>
        logLines(server!).some((l) => l.msg === 'the sync inbox can be read again'),
      );
      expect(await server.stop()).toEqual({ code: 0, signal: null });
    } finally {
      chmodSync(inbox, 0o755);
      chmodSync(rejectedDir, 0o755);
    }
  });
});

describe('serve and a bundle copied slowly (issue 11.8)', () => {
  it('a bundle written in two halves with a pause longer than the stable window is imported, not rejected', async () => {
    const d = await fresh();
    const bytes = await signBundle(d.serverId, path.join(root, `b${n}.bpsync`));
    const target = path.join(d.syncDir, 'inbox', 'slow.bpsync');
    server = await startServe(CLI, serveArgs(d), { cwd: root });
    writeFileSync(target, bytes.subarray(0, Math.floor(bytes.length / 2)));
    await new Promise((r) => setTimeout(r, 1500)); // the stable window is 2 polls of 100 ms
    expect(ls(path.join(d.syncDir, 'rejected'))).toEqual([]);
    appendFileSync(target, bytes.subarray(Math.floor(bytes.length / 2)));
    // The file is moved to processed/ before the line is logged: wait for both.
    await waitFor(
      'the bundle to be imported',
      () =>
        existsSync(path.join(d.syncDir, 'processed', 'slow.bpsync')) &&
        logLines(server!).some((l) => l.msg === 'sync bundle imported'),
    );
    expect(ls(path.join(d.syncDir, 'rejected'))).toEqual([]);
    const lines = logLines(server);
    expect(
      lines.filter((l) => l.msg === 'sync bundle is incomplete; waiting for the rest of it'),
    ).toEqual([expect.objectContaining({ file: 'slow.bpsync' })]);
    expect(lines.find((l) => l.msg === 'sync bundle imported')).toMatchObject({
      file: 'slow.bpsync',
      seq: 1,
      status: 'applied',
      added: 2,
    });
    const status = await runProcess(CLI, ['sync', 'status', '--data-dir', d.dataDir, '--json'], {
      cwd: root,
    });
    expect(JSON.parse(status.stdout)).toMatchObject({ last_import: { seq: 1 } });
    expect(await server.stop()).toEqual({ code: 0, signal: null });
  });

  it('a copy that never finishes is rejected as truncated once it has been unchanged for --sync-incomplete-wait', async () => {
    const d = await fresh();
    const bytes = await signBundle(d.serverId, path.join(root, `b${n}.bpsync`));
    writeFileSync(
      path.join(d.syncDir, 'inbox', 'cut.bpsync'),
      bytes.subarray(0, bytes.length - 20),
    );
    server = await startServe(CLI, serveArgs(d, ['--sync-incomplete-wait', '2']), { cwd: root });
    await new Promise((r) => setTimeout(r, 1000));
    expect(ls(path.join(d.syncDir, 'inbox'))).toEqual(['cut.bpsync']);
    await waitFor('the cut bundle to be rejected', () =>
      existsSync(path.join(d.syncDir, 'rejected', 'cut.bpsync.error.json')),
    );
    const report = JSON.parse(
      readFileSync(path.join(d.syncDir, 'rejected', 'cut.bpsync.error.json'), 'utf8'),
    );
    expect(report).toMatchObject({
      rule: 'malformed',
      message: expect.stringMatching(/truncated/),
    });
    const status = await runProcess(CLI, ['sync', 'status', '--data-dir', d.dataDir, '--json'], {
      cwd: root,
    });
    expect(JSON.parse(status.stdout)).toMatchObject({ last_import: null });
    expect(await server.stop()).toEqual({ code: 0, signal: null });
  });
});
