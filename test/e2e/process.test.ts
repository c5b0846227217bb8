// The single executable as an admin's environment treats it: log readers that go away or stop
// reading, signals, debugging and code-injection attempts, CLI output through pipes, and two
// processes on one data directory. Everything here runs the real executable (built by the global
// setup) in a temp folder.
import { execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  constants,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { killStrays, ROOT, runProcess, startServe, type ServeHandle } from '../spawn.ts';

const EXE: [string, string[]] = ['./bp-license-server', []];
let dir: string;
let n = 0;
const inDir = (env: NodeJS.ProcessEnv = {}) => ({ cwd: dir, env });

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'bpls-process-'));
  copyFileSync(path.join(ROOT, 'dist', 'bp-license-server'), path.join(dir, 'bp-license-server'));
});

afterAll(() => {
  killStrays();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A new initialised data directory (relative to dir) with one entitlement to lease on. */
async function dataDir(): Promise<string> {
  const d = `data-${++n}`;
  const init = await runProcess(EXE, ['init', '--data-dir', d, '--json'], inDir());
  expect(init.code, init.stderr).toBe(0);
  const ent = await runProcess(
    EXE,
    [
      '--data-dir',
      d,
      'entitlements',
      'create',
      '--tenant',
      't1',
      '--product',
      'p1',
      '--type',
      'concurrent',
      '--max-seats',
      '1000000',
      '--ends',
      '2099-01-01T00:00:00Z',
      '--json',
    ],
    inDir(),
  );
  expect(ent.code, ent.stderr).toBe(0);
  return d;
}

function serve(
  d: string,
  extra: string[] = [],
  opts: { env?: NodeJS.ProcessEnv; stderrFd?: number } = {},
): Promise<ServeHandle> {
  return startServe(EXE, ['--data-dir', d, '--host', '127.0.0.1', '--port', '0', ...extra], {
    ...inDir(opts.env),
    ...(opts.stderrFd !== undefined ? { stderrFd: opts.stderrFd } : {}),
  });
}

async function lease(base: string, subject: string): Promise<number> {
  const r = await fetch(`${base}/v1/license/lease`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      product_id: 'p1',
      tenant_id: 't1',
      subject_type: 'user',
      subject_id: subject,
    }),
  });
  await r.arrayBuffer();
  return r.status;
}

/**
 * Runs `one(0)` … `one(count - 1)`, `concurrency` at a time; returns how many answered each status
 * and the slowest answer in ms.
 */
async function runMany(
  count: number,
  concurrency: number,
  one: (i: number) => Promise<number>,
): Promise<{ statuses: Map<number, number>; maxMs: number }> {
  const statuses = new Map<number, number>();
  let next = 0;
  let maxMs = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        const t0 = performance.now();
        const status = await one(i);
        maxMs = Math.max(maxMs, performance.now() - t0);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  return { statuses, maxMs };
}

/** Runs `count` leases, `concurrency` at a time; returns their statuses and the slowest answer in ms. */
const leaseMany = (base: string, count: number, concurrency: number, prefix: string) =>
  runMany(count, concurrency, (i) => lease(base, `${prefix}-${i}`));

/** `count` requests, 16 at a time, every 8th a lease and the others /healthz with a long request id (a long log line). */
const requestMany = (base: string, count: number, prefix: string) =>
  runMany(count, 16, async (i) => {
    if (i % 8 === 0) return lease(base, `${prefix}-${i}`);
    const r = await fetch(`${base}/healthz`, {
      headers: { 'x-request-id': `${prefix}-${i}-`.padEnd(64, 'x') },
    });
    await r.arrayBuffer();
    return r.status;
  });

/** A named pipe whose read end is open (so writers do not block on open) but which nobody reads. */
function fifo(name: string): { file: string; readFd: number; writeFd: number } {
  const file = path.join(dir, name);
  execFileSync('mkfifo', [file]);
  const readFd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  const writeFd = openSync(file, constants.O_WRONLY);
  return { file, readFd, writeFd };
}

/** Reads what a FIFO holds now (non-blocking read end). */
function drain(fd: number): string {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(1 << 16);
  for (;;) {
    let got: number;
    try {
      got = readSync(fd, buf);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') break;
      throw err;
    }
    if (got === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, got)));
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** TCP ports a process listens on, from its own /proc entries (whatever else runs on the machine). */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['tcp', 'tcp6']) {
    const text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    for (const line of text.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length > 9 && c[3] === '0A' && inodes.has(c[9]!))
        ports.push(Number.parseInt(c[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

function alive(s: ServeHandle): boolean {
  return s.child.exitCode === null && s.child.signalCode === null;
}

/** A lease request whose headers and half its body are sent: in flight until finish() sends the rest. */
async function halfSentLease(
  base: string,
  subject: string,
): Promise<{ finish(): Promise<number> }> {
  const url = new URL(base);
  const body = JSON.stringify({
    product_id: 'p1',
    tenant_id: 't1',
    subject_type: 'user',
    subject_id: subject,
  });
  const sock = connect(Number(url.port), url.hostname);
  let answer = '';
  sock.setEncoding('utf8').on('data', (d: string) => (answer += d));
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  sock.on('error', () => {});
  await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  sock.write(
    `POST /v1/license/lease HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 10)}`,
  );
  return {
    async finish() {
      sock.write(body.slice(10));
      const deadline = Date.now() + 10_000;
      while (!/^HTTP\/1\.1 \d{3}[^]*\r\n\r\n[^]*\}/.test(answer) && Date.now() < deadline)
        await Promise.race([closed, sleep(20)]);
      sock.destroy();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(answer);
      return m ? Number(m[1]) : 0;
    },
  };
}

describe('a closed or full stdout/stderr never ends or blocks the server (fault 3)', () => {
  test('keeps serving when its log reader goes away (EPIPE on stderr, as when `serve 2>&1 | tee` is killed)', async () => {
    const d = await dataDir();
    const pipe = fifo('gone-reader');
    const server = await serve(d, ['--log-level', 'debug'], { stderrFd: pipe.writeFd });
    closeSync(pipe.writeFd);
    try {
      expect((await leaseMany(server.base, 50, 8, 'before')).statuses).toEqual(
        new Map([[201, 50]]),
      );
      expect(drain(pipe.readFd)).toContain('"msg":"server started"');
      closeSync(pipe.readFd); // the reader goes away: every later log write gets EPIPE
      const after = await leaseMany(server.base, 500, 8, 'after');
      expect(after.statuses).toEqual(new Map([[201, 500]]));
      expect((await fetch(`${server.base}/healthz`)).status).toBe(200);
      expect(alive(server)).toBe(true);
      const end = await server.stop();
      expect(end).toEqual({ code: 0, signal: null });
    } finally {
      if (alive(server)) server.child.kill('SIGKILL');
    }
  }, 60_000);

  test('a log reader that stops reading neither blocks the server nor makes it hold the lines; it is told what was dropped', async () => {
    const d = await dataDir();
    const pipe = fifo('stalled-reader');
    const server = await serve(d, ['--log-level', 'debug'], { stderrFd: pipe.writeFd });
    closeSync(pipe.writeFd);
    try {
      // ~200 bytes of log a request: 8,000 requests are ~1.6 MB, past the 64 KiB pipe and the
      // 1 MiB the server keeps waiting for the reader. Mostly /healthz (no fsync: quicker), some leases.
      const run = await requestMany(server.base, 8000, 'stalled');
      expect(run.statuses).toEqual(
        new Map([
          [200, 7000],
          [201, 1000],
        ]),
      );
      // Generous for a shared 2-core machine; a blocked event loop would stall for good.
      expect(run.maxMs).toBeLessThan(2000);
      console.log(`stalled log reader: slowest of 8,000 requests ${Math.round(run.maxMs)} ms`);
      const rssMb = () =>
        Number(
          /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.child.pid}/status`, 'utf8'))![1],
        ) / 1024;
      expect(rssMb()).toBeLessThan(300);

      // The reader comes back: once the queue is out, the next line says how many were dropped.
      let log = '';
      for (let i = 0; i < 100 && !log.includes('log lines dropped'); i++) {
        log += drain(pipe.readFd);
        expect(await lease(server.base, `back-${i}`)).toBe(201);
        await sleep(50);
      }
      const dropped = log
        .split('\n')
        .filter((l) => l.includes('log lines dropped'))
        .map((l) => JSON.parse(l) as { level: string; count: number; total: number });
      expect(dropped).toHaveLength(1);
      expect(dropped[0]!.level).toBe('warn');
      expect(dropped[0]!.count).toBeGreaterThan(1000);
      expect(log).toContain('"path":"/v1/license/lease"');

      // It stalls again, and still stops at once on SIGTERM, the reader not reading.
      const again = await requestMany(server.base, 8000, 'stalled-again');
      expect(again.statuses).toEqual(
        new Map([
          [200, 7000],
          [201, 1000],
        ]),
      );
      const t0 = performance.now();
      const end = await server.stop();
      expect(end).toEqual({ code: 0, signal: null });
      expect(performance.now() - t0).toBeLessThan(5000);
    } finally {
      closeSync(pipe.readFd);
      if (alive(server)) server.child.kill('SIGKILL');
    }
  }, 120_000);
});

/** Nothing in the server's log speaks of a debugger; SIGTERM then ends it with exit 0. */
async function expectNoInspectorAndCleanStop(server: ServeHandle): Promise<void> {
  expect(server.stderr()).not.toMatch(/debugger|inspector/i);
  expect(await server.stop()).toEqual({ code: 0, signal: null });
}

describe('no debugging or code-injection channel in the executable (fault 4)', () => {
  test('SIGUSR1 does not open the inspector, and the server goes on serving', async () => {
    const d = await dataDir();
    const server = await serve(d);
    try {
      const port = Number(new URL(server.base).port);
      expect(listeningPorts(server.child.pid!)).toEqual([port]);
      for (let i = 0; i < 3; i++) {
        process.kill(server.child.pid!, 'SIGUSR1');
        await sleep(100);
      }
      await sleep(300);
      expect(alive(server)).toBe(true);
      expect(listeningPorts(server.child.pid!)).toEqual([port]);
      expect(await lease(server.base, 'after-usr1')).toBe(201);
      await expectNoInspectorAndCleanStop(server);
    } finally {
      if (alive(server)) server.child.kill('SIGKILL');
    }
  }, 60_000);

  test('NODE_OPTIONS and NODE_PATH load nothing and open nothing', async () => {
    const d = await dataDir();
    const marker = path.join(dir, 'injected-marker');
    const script = path.join(dir, 'inject.js');
    writeFileSync(script, `require('fs').writeFileSync(${JSON.stringify(marker)}, 'ran');\n`);
    mkdirSync(path.join(dir, 'node_path', 'better-sqlite3'), { recursive: true });
    writeFileSync(
      path.join(dir, 'node_path', 'better-sqlite3', 'index.js'),
      `require('fs').writeFileSync(${JSON.stringify(marker)}, 'ran');\n`,
    );
    const env = {
      NODE_OPTIONS: `--require ${script} --inspect=127.0.0.1:0`,
      NODE_PATH: path.join(dir, 'node_path'),
    };
    const server = await serve(d, [], { env });
    try {
      expect(listeningPorts(server.child.pid!)).toEqual([Number(new URL(server.base).port)]);
      expect(await lease(server.base, 'node-options')).toBe(201);
      expect(existsSync(marker)).toBe(false);
      await expectNoInspectorAndCleanStop(server);
    } finally {
      if (alive(server)) server.child.kill('SIGKILL');
    }
    const version = await runProcess(EXE, ['--version'], inDir(env));
    expect(version.code).toBe(0);
    expect(existsSync(marker)).toBe(false);
  }, 60_000);

  test.each([
    ['--inspect=127.0.0.1:0'],
    ['--inspect-brk'],
    ['--require', 'inject.js'],
    ['-r', 'inject.js'],
    ['--import', './inject.js'],
    ['--eval', 'process.exit(7)'],
  ])(
    'Node options on the command line (%s) are refused as usage errors, not obeyed',
    async (...opt) => {
      const marker = path.join(dir, 'injected-marker');
      writeFileSync(
        path.join(dir, 'inject.js'),
        `require('fs').writeFileSync(${JSON.stringify(marker)}, 'ran');\n`,
      );
      const r = await runProcess(
        EXE,
        [...opt, 'serve', '--data-dir', 'nowhere', '--port', '0'],
        inDir(),
      );
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^error: unknown option/m);
      expect(r.stderr).not.toMatch(/debugger|inspector/i);
      expect(existsSync(marker)).toBe(false);
    },
  );
});

/** Waits (15 s at most) for the server to exit by itself, asserts exit 0, returns its log lines. */
async function exitedZeroLogLines(
  server: ServeHandle,
): Promise<Array<{ msg: string; signal?: string }>> {
  const end = await Promise.race([server.exited, sleep(15_000).then(() => 'still running')]);
  expect(end, server.stderr()).toEqual({ code: 0, signal: null });
  return server
    .stderr()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { msg: string; signal?: string });
}

describe('signals (fault 7): only SIGTERM/SIGINT stop the server, once, after the drain', () => {
  test('SIGHUP, SIGUSR1 and SIGUSR2 with 64 requests in flight kill nothing; a second SIGTERM or a SIGINT in the drain is ignored, and every request in flight is answered', async () => {
    const d = await dataDir();
    const server = await serve(d);
    try {
      const pid = server.child.pid!;
      const burst = Array.from({ length: 64 }, (_, i) => lease(server.base, `burst-${i}`));
      for (const sig of ['SIGHUP', 'SIGUSR2', 'SIGUSR1'] as const) process.kill(pid, sig);
      expect(await Promise.all(burst)).toEqual(Array(64).fill(201));
      expect(alive(server)).toBe(true);

      // 64 requests the server has received but not finished reading (their bodies are half sent).
      const inFlight = await Promise.all(
        Array.from({ length: 64 }, (_, i) => halfSentLease(server.base, `drain-${i}`)),
      );
      await sleep(300);
      process.kill(pid, 'SIGTERM');
      await sleep(200);
      for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR2', 'SIGUSR1'] as const) {
        process.kill(pid, sig);
        await sleep(50);
      }
      await sleep(300);
      expect(alive(server), server.stderr()).toBe(true);
      expect(await Promise.all(inFlight.map((r) => r.finish()))).toEqual(Array(64).fill(201));
      const lines = await exitedZeroLogLines(server);
      const msgs = (msg: string) => lines.filter((l) => l.msg === msg).map((l) => l.signal);
      expect(msgs('draining')).toEqual(['SIGTERM']);
      expect(msgs('signal ignored: already draining')).toEqual(['SIGTERM', 'SIGINT']);
      expect(msgs('signal ignored: no --log-file to reopen')).toEqual(['SIGHUP', 'SIGHUP']);
      expect(msgs('signal ignored')).toContain('SIGUSR2');
      expect(lines.at(-1)!.msg).toBe('stopped');
    } finally {
      if (alive(server)) server.child.kill('SIGKILL');
    }
  }, 90_000);

  test('signals that end a process by default but mean nothing to a server are logged and ignored; SIGQUIT drains like SIGTERM', async () => {
    const d = await dataDir();
    const server = await serve(d);
    try {
      const pid = server.child.pid!;
      const stray = [
        'SIGALRM',
        'SIGVTALRM',
        'SIGPROF',
        'SIGPWR',
        'SIGIO',
        'SIGXFSZ',
        'SIGXCPU',
      ] as const;
      for (const sig of stray) process.kill(pid, sig);
      await sleep(300);
      expect(alive(server), server.stderr()).toBe(true);
      expect(await lease(server.base, 'after-stray-signals')).toBe(201);
      process.kill(pid, 'SIGQUIT');
      const lines = await exitedZeroLogLines(server);
      // Pending signals are delivered in the kernel's order, not the order sent.
      expect(
        lines
          .filter((l) => l.msg === 'signal ignored')
          .map((l) => l.signal)
          .sort(),
      ).toEqual([...stray].sort());
      expect(lines.filter((l) => l.msg === 'draining').map((l) => l.signal)).toEqual(['SIGQUIT']);
    } finally {
      if (alive(server)) server.child.kill('SIGKILL');
    }
  }, 60_000);

  test('a file-size limit (ulimit -f) reached by the database answers a storage error and never kills the server', async () => {
    const d = await dataDir();
    const files = ['license.db', 'license.db-wal']
      .map((f) => path.join(dir, d, f))
      .filter((f) => existsSync(f));
    const limit = Math.max(...files.map((f) => statSync(f).size)) + 256 * 1024;
    const server = await startServe(
      ['prlimit', [`--fsize=${limit}`, '--', './bp-license-server']],
      ['--data-dir', d, '--host', '127.0.0.1', '--port', '0'],
      inDir(),
    );
    try {
      const statuses = new Map<number, number>();
      for (let i = 0; i < 3000 && !statuses.has(503) && !statuses.has(507); i++) {
        const s = await lease(server.base, `fsize-${i}`);
        statuses.set(s, (statuses.get(s) ?? 0) + 1);
      }
      expect(alive(server), server.stderr()).toBe(true);
      // The limit was reached: refused as storage (503 or 507 with the envelope), never a 500.
      expect(
        [...statuses.keys()].filter((s) => s !== 201).every((s) => s === 503 || s === 507),
        JSON.stringify([...statuses]),
      ).toBe(true);
      expect(statuses.has(503) || statuses.has(507), JSON.stringify([...statuses])).toBe(true);
      const r = await fetch(`${server.base}/healthz`);
      expect(r.status).toBe(200);
      await r.arrayBuffer();
    } finally {
      if (alive(server)) server.child.kill('SIGKILL');
    }
  }, 90_000);

  test('serve --log-file appends to a 0600 file, and SIGHUP reopens it after logrotate moved it', async () => {
    const d = await dataDir();
    mkdirSync(path.join(dir, 'logs'), { recursive: true });
    const file = path.join(dir, 'logs', 'server.log');
    const server = await serve(d, ['--log-file', 'logs/server.log']);
    try {
      expect(await lease(server.base, 'log-1')).toBe(201);
      await sleep(100);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      renameSync(file, `${file}.1`);
      expect(await lease(server.base, 'log-2')).toBe(201);
      process.kill(server.child.pid!, 'SIGHUP');
      await sleep(200);
      expect(await lease(server.base, 'log-3')).toBe(201);
      expect(await server.stop()).toEqual({ code: 0, signal: null });
    } finally {
      if (alive(server)) server.child.kill('SIGKILL');
    }
    const parse = (f: string) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { msg: string; status?: number });
    const old = parse(`${file}.1`);
    const now = parse(file);
    expect(old.map((l) => l.msg)).toEqual(['server started', 'request', 'request']);
    expect(now.map((l) => l.msg)).toEqual([
      'log file reopened',
      'request',
      'draining',
      'listener closed; draining connections',
      'stopped',
    ]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // The log went to the file, not to stderr.
    expect(server.stderr()).toBe('');

    // BPLS_LOG_FILE does the same.
    const viaEnv = await serve(d, [], { env: { BPLS_LOG_FILE: 'logs/env.log' } });
    expect(await viaEnv.stop()).toEqual({ code: 0, signal: null });
    expect(viaEnv.stderr()).toBe('');
    expect(parse(path.join(dir, 'logs', 'env.log')).map((l) => l.msg)).toEqual([
      'server started',
      'draining',
      'listener closed; draining connections',
      'stopped',
    ]);

    const bad = await runProcess(
      EXE,
      ['serve', '--data-dir', d, '--port', '0', '--log-file', 'no-such-dir/x.log'],
      inDir(),
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(
      /^error\[invalid_request\]: cannot open the log file no-such-dir\/x\.log: ENOENT/,
    );
  }, 60_000);
});

describe('CLI output is complete before exit, or the exit code says it is not (fault 10)', () => {
  let d: string;
  beforeAll(async () => {
    d = `data-${++n}`;
    expect((await runProcess(EXE, ['init', '--data-dir', d], inDir())).code).toBe(0);
    // 120 entitlements with 256 long feature names each: `entitlements list --json` prints ~4 MB.
    const features = Array.from({ length: 256 }, (_, j) => `feature-${j}-${'x'.repeat(100)}`);
    const entitlements = Array.from({ length: 120 }, (_, i) => ({
      external_id: `big-${i}`,
      tenant_id: 't-big',
      product_id: 'p-big',
      policy_json: { type: 'concurrent', max_seats: 5, features },
      starts_at: '2024-01-01T00:00:00Z',
      ends_at: '2099-01-01T00:00:00Z',
    }));
    writeFileSync(path.join(dir, 'big.json'), JSON.stringify({ entitlements }));
    const imp = await runProcess(
      EXE,
      ['--data-dir', d, 'entitlements', 'import', 'big.json'],
      inDir(),
    );
    expect(imp.code, imp.stderr).toBe(0);
  }, 60_000);

  function list(reader: 'slow' | 'closes-early'): Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }> {
    return new Promise((resolve) => {
      const child = spawn(
        EXE[0],
        ['--data-dir', d, 'entitlements', 'list', '--limit', '500', '--json'],
        { cwd: dir, env: {}, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const out: Buffer[] = [];
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      child.stdout.on('data', (b: Buffer) => {
        out.push(b);
        if (reader === 'closes-early') {
          child.stdout.destroy();
          return;
        }
        child.stdout.pause();
        setTimeout(() => child.stdout.resume(), 5);
      });
      child.on('close', (code, signal) =>
        resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr }),
      );
    });
  }

  test('a slow reader gets the whole >1 MB JSON, and exit 0', async () => {
    const r = await list('slow');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBeGreaterThan(1 << 20);
    const parsed = JSON.parse(r.stdout) as {
      data: Array<{ external_id: string; policy_json: { features: string[] } }>;
      next_cursor: string | null;
    };
    expect(parsed.data).toHaveLength(120);
    expect(parsed.data.every((e) => e.policy_json.features.length === 256)).toBe(true);
    expect(new Set(parsed.data.map((e) => e.external_id)).size).toBe(120);
  }, 60_000);

  test('a reader that closes early gives exit 1 and a one-line error, no crash trace', async () => {
    const r = await list('closes-early');
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'error[internal]: the output is incomplete: stdout was closed before it was all written\n',
    );
  }, 60_000);

  test('through a shell pipe: `| head -c 100` makes the command exit 1, `| cat` gets it all with exit 0', () => {
    const cmd = (tail: string) =>
      execFileSync(
        'bash',
        [
          '-c',
          `./bp-license-server --data-dir ${d} entitlements list --limit 500 --json 2>err.txt | ${tail}; echo "exit=\${PIPESTATUS[0]}"`,
        ],
        {
          cwd: dir,
          env: { PATH: '/usr/bin:/bin' },
          maxBuffer: 64 << 20,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      ).toString('utf8');
    const head = cmd('head -c 100 >/dev/null');
    expect(head.trim()).toBe('exit=1');
    expect(readFileSync(path.join(dir, 'err.txt'), 'utf8')).toBe(
      'error[internal]: the output is incomplete: stdout was closed before it was all written\n',
    );
    const all = cmd('cat');
    expect(all.trimEnd().endsWith('exit=0')).toBe(true);
    const json = all.slice(0, all.lastIndexOf('exit=0'));
    expect((JSON.parse(json) as { data: unknown[] }).data).toHaveLength(120);
  }, 60_000);
});

describe('one server per data directory (fault 11)', () => {
  test('a second serve on the same data directory refuses, naming the first', async () => {
    const d = await dataDir();
    const first = await serve(d);
    try {
      const second = await runProcess(
        EXE,
        ['serve', '--data-dir', d, '--host', '127.0.0.1', '--port', '0'],
        inDir(),
      );
      expect(second.code).toBe(1);
      expect(second.stdout).toBe('');
      expect(second.stderr).toMatch(
        new RegExp(
          `^error\\[conflict\\]: ${dir}/${d} is served by another process \\(pid ${first.child.pid} on .+, serve since .+\\)\\nhint: one server per data directory`,
        ),
      );
      // The first goes on serving, and the CLI still runs beside it.
      expect(await lease(first.base, 'still-first')).toBe(201);
      const list = await runProcess(EXE, ['--data-dir', d, 'leases', 'list', '--json'], inDir());
      expect(list.code, list.stderr).toBe(0);
      expect((JSON.parse(list.stdout) as { data: unknown[] }).data).toHaveLength(1);
      const backup = await runProcess(
        EXE,
        ['--data-dir', d, 'backup', '--out', `${d}-backup`],
        inDir(),
      );
      expect(backup.code, backup.stderr).toBe(0);
      expect(readdirSync(path.join(dir, `${d}-backup`)).sort()).toEqual([
        'license.db',
        'server.json',
        'server.key',
      ]);
      expect(await server2Refused(d, first.child.pid!, { env: { BPLS_DATA_DIR: d } })).toBe(true);
      expect(await first.stop()).toEqual({ code: 0, signal: null });
    } finally {
      if (alive(first)) first.child.kill('SIGKILL');
    }
    // Stopped cleanly, it lets the next one in.
    const next = await serve(d);
    expect(await next.stop()).toEqual({ code: 0, signal: null });
  }, 60_000);

  test('init --force refuses while a server holds the directory, and changes nothing', async () => {
    const d = await dataDir();
    const server = await serve(d);
    const snapshot = () =>
      Object.fromEntries(
        readdirSync(path.join(dir, d))
          .filter((f) => !f.endsWith('-shm') && !f.endsWith('-wal'))
          .map((f) => [f, readFileSync(path.join(dir, d, f)).toString('base64')]),
      );
    try {
      expect(await lease(server.base, 'before-force')).toBe(201);
      const before = snapshot();
      const force = await runProcess(EXE, ['init', '--data-dir', d, '--force'], inDir());
      expect(force.code).toBe(1);
      expect(force.stdout).toBe('');
      expect(force.stderr).toMatch(
        new RegExp(
          `^error\\[conflict\\]: ${dir}/${d} is served by another process \\(pid ${server.child.pid} `,
        ),
      );
      expect(snapshot()).toEqual(before);
      expect(readdirSync(path.join(dir, d)).filter((f) => f.includes('replaced'))).toEqual([]);
      expect(await lease(server.base, 'after-force')).toBe(201);
      expect(await server.stop()).toEqual({ code: 0, signal: null });
    } finally {
      if (alive(server)) server.child.kill('SIGKILL');
    }
    // Without a server it goes ahead (the lock file stays where it is, the rest is moved aside).
    const force = await runProcess(EXE, ['init', '--data-dir', d, '--force', '--json'], inDir());
    expect(force.code, force.stderr).toBe(0);
    expect(
      (JSON.parse(force.stdout) as { moved_aside: string[] }).moved_aside.length,
    ).toBeGreaterThanOrEqual(3);
    expect(existsSync(path.join(dir, d, 'serve.lock'))).toBe(true);
    const again = await serve(d);
    expect(await again.stop()).toEqual({ code: 0, signal: null });
  }, 60_000);

  test('the kernel releases the lock when the server is killed (kill -9): a new serve starts', async () => {
    const d = await dataDir();
    const server = await serve(d);
    server.child.kill('SIGKILL');
    expect(await server.exited).toEqual({ code: null, signal: 'SIGKILL' });
    const next = await serve(d);
    try {
      expect(await lease(next.base, 'after-kill')).toBe(201);
      expect(statSync(path.join(dir, d, 'serve.lock')).mode & 0o777).toBe(0o600);
      expect(await next.stop()).toEqual({ code: 0, signal: null });
    } finally {
      if (alive(next)) next.child.kill('SIGKILL');
    }
  }, 60_000);
});

/** A serve given the data directory through the environment is refused too. */
async function server2Refused(
  d: string,
  pid: number,
  opts: { env: NodeJS.ProcessEnv },
): Promise<boolean> {
  const r = await runProcess(EXE, ['serve', '--host', '127.0.0.1', '--port', '0'], inDir(opts.env));
  return r.code === 1 && r.stderr.includes(`${d} is served by another process (pid ${pid} `);
}
