// make chaos: the attacks of "Never down" against the built executable while a normal client leases.
//
//   node scripts/build-binary.mjs && node bench/chaos.mjs       (make chaos does both)
//   CHAOS_QUICK=1 make chaos     shorter windows (about 1 minute in all)
//   CHAOS_STRICT=1 make chaos    exit 1 when a target is missed (default: print and exit 0, as bench)
//
// One server (dist/bp-license-server) on a fresh data dir, on a small tmpfs when the machine allows
// a mount (else the disk-full attack is skipped, with the reason printed). A normal client (4
// loops of grant + release, new subject each time) runs through every attack; its answers are
// filed under the attack running at the time. Each attack is bounded in time and in what it sends.
// Printed: attack, what the attack itself saw, the normal client's p50/p99/max latency, server RSS
// peak, 5xx answers the normal client got (507 during disk-full is the intended answer and is
// counted apart), and crashes. Writes bench/results/chaos.json.
//
// Targets (issue "Never down"): zero crashes, zero unexpected 5xx, RSS peak under 300 MB, the
// normal client's max latency under 250 ms.
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { bundleContent } from './lib/bundle.mjs';
import { adminApi, memMb } from './lib/server.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

// Heavy attacks run in a child process of their own (`node bench/chaos.mjs attacker NAME ARG…`), so
// the work of attacking does not slow the normal client, which runs in this process.
if (process.argv[2] === 'attacker') {
  await runAttacker(process.argv[3], process.argv.slice(4));
  process.exit(0);
}
const EXE = join(root, 'dist', 'bp-license-server');
const QUICK = process.env.CHAOS_QUICK === '1';
const WINDOW_MS = QUICK ? 4_000 : 12_000;
const BIG_BUNDLE = QUICK ? 100_000 : 400_000;
const TARGETS = { crashes: 0, unexpected_5xx: 0, rss_peak_mb: 300, client_max_ms: 250 };

if (!existsSync(EXE)) {
  console.error(`chaos: ${EXE} is missing; run make chaos (it builds the executable first)`);
  process.exit(1);
}

const live = new Set();
const work = mkdtempSync(join(tmpdir(), 'bpls-chaos-'));
let mounted = null;

function cleanup() {
  for (const c of live) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  if (mounted) spawnSync('umount', ['-l', mounted]);
  if (process.env.CHAOS_KEEP !== '1') rmSync(work, { recursive: true, force: true });
  else console.log(`kept: ${work}`);
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

function cli(args, opts = {}) {
  const r = spawnSync(EXE, args, {
    encoding: 'utf8',
    timeout: 600_000,
    maxBuffer: 256 << 20,
    ...opts,
  });
  return r;
}
function cliJson(args) {
  const r = cli(['--json', ...args]);
  if (r.status !== 0)
    throw new Error(
      `${args.join(' ')} exited ${r.status ?? r.signal}: ${(r.stderr || r.stdout).slice(0, 600)}`,
    );
  return JSON.parse(r.stdout);
}

// The data dir: on a 768 MiB tmpfs when a mount is allowed (root, not in a locked-down container).
const dataParent = join(work, 'disk');
mkdirSync(dataParent);
let diskNote = null;
const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=768m,mode=0700', 'tmpfs', dataParent], {
  encoding: 'utf8',
});
if (m.status === 0) mounted = dataParent;
else
  diskNote = `disk-full attack skipped: cannot mount a tmpfs here (${(m.stderr || '').trim() || `exit ${m.status}`})`;
const dataDir = join(dataParent, 'data');
const syncDir = join(work, 'sync');
for (const f of ['inbox', 'outbox', 'processed', 'rejected'])
  mkdirSync(join(syncDir, f), { recursive: true });

const keys = cliJson(['vendor', 'keygen', '--out', join(work, 'vendor')]);
const init = cliJson(['--data-dir', dataDir, 'init', '--vendor-key', keys.public_key]);

// ---- the server ------------------------------------------------------------------------------
let server = null;
const logFile = join(work, 'server.log');
let stderrBytes = 0;

function startServer() {
  return new Promise((resolve, reject) => {
    const child = spawn(
      EXE,
      ['--data-dir', dataDir, 'serve', '--host', '127.0.0.1', '--port', '0', '--sync-dir', syncDir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    live.add(child);
    const logFd = openSync(logFile, 'a');
    child.stderr.on('data', (d) => {
      stderrBytes += d.length;
      try {
        writeSync(logFd, d);
      } catch {
        // the log file is ours; a failure to copy does not matter to the run
      }
    });
    child.stderr.on('close', () => {
      try {
        closeSync(logFd);
      } catch {
        // closed
      }
    });
    const s = { child, pid: child.pid, url: null, exit: null, expectedExit: false };
    child.once('exit', (code, signal) => {
      s.exit = { code, signal };
      live.delete(child);
    });
    const t = setTimeout(() => reject(new Error('serve did not start within 30 s')), 30_000);
    createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(t);
      const mm = /^listening on (http:\/\/\S+)$/.exec(line);
      if (!mm) return reject(new Error(`unexpected first line: ${line}`));
      s.url = mm[1];
      resolve(s);
    });
    child.once('exit', () => {
      clearTimeout(t);
      if (!s.url)
        reject(
          new Error(`serve exited before listening: ${readFileSync(logFile, 'utf8').slice(-1500)}`),
        );
    });
  });
}

server = await startServer();
const api = () => adminApi(server.url, init.admin_token);
await api().post('/v1/entitlements', {
  tenant_id: 'chaos',
  product_id: 'chaos-app',
  policy_json: { type: 'concurrent', max_seats: 1_000_000 },
  starts_at: '2020-01-01T00:00:00Z',
  ends_at: '2099-12-31T23:59:59Z',
});

// ---- the normal client -------------------------------------------------------------------------
let label = 'warm-up';
const samples = new Map(); // label -> { ms: [], statuses: Map, errors: n, fiveXX, expected5xx }
let clientOn = true;
let subjectN = 0;
function bucket(l) {
  if (!samples.has(l))
    samples.set(l, {
      ms: [],
      statuses: {},
      errors: 0,
      unexpected5xx: 0,
      expected5xx: 0,
      errorKinds: {},
    });
  return samples.get(l);
}
const expected5xxFor = { 'disk full': new Set([507]) };

async function clientLoop() {
  while (clientOn) {
    const l = label;
    const b = bucket(l);
    const t0 = performance.now();
    let status = 0;
    try {
      const res = await fetch(`${server.url}/v1/license/lease`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          product_id: 'chaos-app',
          tenant_id: 'chaos',
          subject_type: 'user',
          subject_id: `normal-${subjectN++}`,
        }),
        signal: AbortSignal.timeout(10_000),
      });
      const body = await res.json().catch(() => null);
      status = res.status;
      b.ms.push(performance.now() - t0);
      b.statuses[status] = (b.statuses[status] ?? 0) + 1;
      if (status >= 500) {
        if (expected5xxFor[l]?.has(status)) b.expected5xx++;
        else b.unexpected5xx++;
      }
      if (status === 201 && body?.lease_id) {
        await fetch(`${server.url}/v1/license/lease/release`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ lease_id: body.lease_id }),
          signal: AbortSignal.timeout(10_000),
        })
          .then((r) => r.arrayBuffer())
          .catch(() => {});
      }
    } catch (err) {
      b.errors++;
      const kind = err?.cause?.code ?? err?.name ?? 'error';
      b.errorKinds[kind] = (b.errorKinds[kind] ?? 0) + 1;
      await sleep(20);
    }
    await sleep(5);
  }
}

// ---- RSS and crash watch -----------------------------------------------------------------------
const rssPeak = new Map();
const crashes = new Map();
const rssTimer = setInterval(() => {
  if (!server || server.exit) return;
  try {
    const { rss } = memMb(server.pid);
    if (Number.isFinite(rss)) rssPeak.set(label, Math.max(rssPeak.get(label) ?? 0, rss));
  } catch {
    // exited between the check and the read
  }
}, 50);

async function ensureServer() {
  if (server.exit && !server.expectedExit) {
    crashes.set(label, (crashes.get(label) ?? 0) + 1);
    console.log(
      `  !! the server died during "${label}": ${JSON.stringify(server.exit)}; log tail:\n${readFileSync(logFile, 'utf8').slice(-1200)}`,
    );
    server = await startServer();
  }
}

// ---- the attacks -------------------------------------------------------------------------------
function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
const results = [];

/**
 * Runs one attack while the normal client leases. `opts.latencyExempt`: why this attack's client
 * latency is not held to the 250 ms target (printed beside the figures; still measured).
 */
async function attack(name, fn, opts = {}) {
  label = name;
  bucket(name);
  const t0 = performance.now();
  let saw;
  try {
    saw = await fn();
  } catch (err) {
    saw = `attack failed: ${err.message}`;
  }
  const spent = performance.now() - t0;
  if (spent < WINDOW_MS / 2) await sleep(WINDOW_MS / 2 - spent);
  await ensureServer();
  results.push({ attack: name, saw: saw ?? '', latency_exempt: opts.latencyExempt ?? null });
  console.log(`  ${name}: ${saw ?? ''}`);
}

/**
 * Runs `cmd args` to its end (SIGKILLed after timeoutMs); resolves with its exit code and what it
 * printed, stdout and stderr together.
 */
function runCollect(cmd, args, timeoutMs) {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(c);
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (out += d));
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code) => {
      clearTimeout(t);
      live.delete(c);
      resolve({ code, out });
    });
  });
}

/** Runs one heavy attack in a child process; resolves with what it printed. */
async function attacker(name, args) {
  const self = fileURLToPath(import.meta.url);
  return (await runCollect(process.execPath, [self, 'attacker', name, ...args], 120_000)).out;
}

async function runAttacker(name, args) {
  if (name === 'inbox') {
    const [inbox] = args;
    writeFileSync(join(inbox, `${'x'.repeat(241 - '.bpsync'.length)}.bpsync`), 'junk');
    writeFileSync(join(inbox, `${'y'.repeat(230)}.bpsync`), 'junk');
    for (let i = 0; i < 20_000; i++) writeFileSync(join(inbox, `junk-${i}.bpsync`), `junk ${i}`);
    return;
  }
  if (name === 'memory') {
    const [base, windowMs] = args;
    const url = new URL(base);
    const chunk = Buffer.alloc(64 * 1024, 'a');
    const socks = [];
    let answered = 0;
    for (let i = 0; i < 1500; i++) {
      // Half on the lease route (no token needed), half on an admin route without a token.
      const path = i % 2 === 0 ? '/v1/license/lease' : '/v1/entitlements';
      const chunked = i % 4 < 2;
      const s = net.connect(Number(url.port), url.hostname);
      s.on('error', () => {});
      s.once('data', () => answered++);
      s.on('connect', async () => {
        s.write(
          `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${chunked ? 'Transfer-Encoding: chunked' : 'Content-Length: 1040001'}\r\n\r\n`,
        );
        let sent = 0;
        while (sent < 1_040_000 && !s.destroyed) {
          const part = chunk.subarray(0, Math.min(chunk.length, 1_040_000 - sent));
          const ok = s.write(
            chunked
              ? Buffer.concat([
                  Buffer.from(`${part.length.toString(16)}\r\n`),
                  part,
                  Buffer.from('\r\n'),
                ])
              : part,
          );
          sent += part.length;
          if (!ok) await new Promise((r) => s.once('drain', r).once('close', r));
        }
      });
      socks.push(s);
    }
    await sleep(Number(windowMs));
    for (const s of socks) s.destroy();
    await sleep(1000);
    console.log(`${answered} of 1,500 connections got an answer`);
    return;
  }
  if (name === 'oversize') {
    const [base, token, n] = args;
    let readable = 0;
    const failures = {};
    const big = 'x'.repeat(4 << 20);
    for (let i = 0; i < Number(n); i++) {
      const path = i % 2 ? '/v1/license/lease' : '/v1/entitlements';
      try {
        const res = await fetch(`${base}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: big,
          signal: AbortSignal.timeout(10_000),
        });
        const b = await res.json().catch(() => null);
        if (res.status === 413 && b?.error?.code === 'payload_too_large') readable++;
        else failures[res.status] = (failures[res.status] ?? 0) + 1;
      } catch (err) {
        const k = err?.cause?.code ?? err?.name ?? 'error';
        failures[k] = (failures[k] ?? 0) + 1;
      }
    }
    console.log(
      `${readable}/${n} 413 envelopes read${Object.keys(failures).length ? `; otherwise ${JSON.stringify(failures)}` : ''}`,
    );
    return;
  }
  throw new Error(`unknown attacker ${name}`);
}

function rawRequest(bytes, { readMs = 3000 } = {}) {
  const url = new URL(server.url);
  return new Promise((resolve) => {
    const sock = net.connect(Number(url.port), url.hostname);
    let got = '';
    const done = () => {
      sock.destroy();
      resolve(got);
    };
    sock.setEncoding('latin1');
    sock.on('data', (d) => (got += d));
    sock.on('error', done);
    sock.on('close', done);
    sock.on('connect', () => sock.write(bytes, 'latin1'));
    setTimeout(done, readMs);
  });
}
const hasEnvelope = (answer) => {
  const i = answer.indexOf('\r\n\r\n');
  if (i === -1) return false;
  try {
    return (
      typeof JSON.parse(
        answer
          .slice(i + 4)
          .split('\r\n')[0]
          .trim() || answer.slice(i + 4),
      ).error?.code === 'string'
    );
  } catch {
    return false;
  }
};

// The big bundle is signed before anything is measured (signing is not an attack).
const bundle = join(work, 'big.bpsync');
{
  const content = join(work, 'content.json');
  writeFileSync(content, JSON.stringify(bundleContent(BIG_BUNDLE)));
  cliJson([
    'vendor',
    'sign',
    '--key',
    keys.secret_key_file,
    '--server-id',
    init.server_id,
    '--seq',
    '1',
    '--in',
    content,
    '--out',
    bundle,
  ]);
  unlinkSync(content);
}

console.log(
  `chaos: ${QUICK ? 'quick' : 'full'} run, windows of ${WINDOW_MS / 1000} s, server ${server.url} (pid ${server.pid}), data dir ${mounted ? 'on a 768 MiB tmpfs' : 'on the temp disk'}`,
);
const loops = [clientLoop(), clientLoop(), clientLoop(), clientLoop()];
await sleep(1500);

await attack('baseline (no attack)', async () => {
  await sleep(WINDOW_MS);
  return 'nothing';
});

await attack('inbox: 20,000 junk files + a 241-byte name', async () => {
  const inbox = join(syncDir, 'inbox');
  await attacker('inbox', [inbox]);
  await sleep(WINDOW_MS);
  const left = spawnSync('sh', ['-c', `ls ${JSON.stringify(inbox)} | wc -l`], {
    encoding: 'utf8',
  }).stdout.trim();
  return `${left} files left in inbox after ${WINDOW_MS / 1000} s`;
});

await attack('memory: 1,500 unfinished 1 MB bodies', async () => {
  const out = await attacker('memory', [server.url, String(WINDOW_MS)]);
  let after = null;
  try {
    after = Math.round(memMb(server.pid).rss);
  } catch {
    // exited
  }
  return `${out.trim()}; RSS ${after} MB 1 s after they closed`;
});

await attack('413: fetch of 4 MB bodies, readable?', async () =>
  (await attacker('oversize', [server.url, init.admin_token, String(QUICK ? 20 : 60)])).trim(),
);

await attack('protocol: CL+TE, double CL, 64 KiB headers, HTTP/1.0 no Host', async () => {
  const reqs = [
    'POST /v1/license/lease HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'POST /v1/license/lease HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
    `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`,
    'GET /v1/entitlements HTTP/1.0\r\n\r\n',
    'GET /healthz HTTP/1.0\r\n\r\n',
    'BLAH\r\n\r\n',
  ];
  let enveloped = 0;
  let total = 0;
  const noEnvelope = new Set();
  for (let round = 0; round < (QUICK ? 5 : 20); round++) {
    for (const r of reqs) {
      const a = await rawRequest(r, { readMs: 2000 });
      total++;
      const firstLine = a.split('\r\n')[0];
      if (/^HTTP\/1\.[01] 2\d\d/.test(firstLine) || hasEnvelope(a)) enveloped++;
      else noEnvelope.add(`${r.split('\r\n')[0].slice(0, 30)} -> ${firstLine || '(nothing)'}`);
    }
  }
  return `${enveloped}/${total} answered with the envelope (or 2xx)${noEnvelope.size ? `; not: ${[...noEnvelope].join('; ')}` : ''}`;
});

await attack('signals: USR1, USR2, HUP', async () => {
  for (const sig of ['SIGUSR1', 'SIGUSR2', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGHUP']) {
    try {
      process.kill(server.pid, sig);
    } catch {
      // exited
    }
    await sleep(WINDOW_MS / 8);
  }
  const inspector = await new Promise((resolve) => {
    const s = net.connect(9229, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve('OPEN');
    });
    s.on('error', () => resolve('closed'));
  });
  return `inspector port 9229 ${inspector}; server ${server.exit ? 'exited' : 'up'}`;
});

await attack('stderr reader gone (EPIPE)', async () => {
  const before = stderrBytes;
  server.child.stderr.destroy();
  await sleep(WINDOW_MS);
  return `${before} bytes of log read before the pipe closed; server ${server.exit ? `exited ${JSON.stringify(server.exit)}` : 'up'}`;
});

await attack(
  'another process holds the write lock 3 s',
  async () => {
    // Node with better-sqlite3 from node_modules: BEGIN IMMEDIATE, 3 s, ROLLBACK.
    const script = `const D=require(${JSON.stringify(join(root, 'node_modules', 'better-sqlite3'))});const d=new D(${JSON.stringify(join(dataDir, 'license.db'))});d.exec('BEGIN IMMEDIATE');setTimeout(()=>{d.exec('ROLLBACK');d.close()},3000)`;
    const nodeBin = join(root, 'node_modules', '.bin', 'node');
    let holding = true;
    const r = new Promise((resolve) => {
      const c = spawn(nodeBin, ['-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      c.stderr.on('data', (d) => (err += d));
      c.on('close', (code) => {
        holding = false;
        resolve({ code, err });
      });
    });
    // Meanwhile the event loop must stay free: /healthz (and every read) answers at once.
    let healthMax = 0;
    while (holding) {
      const t0 = performance.now();
      await fetch(`${server.url}/healthz`)
        .then((x) => x.arrayBuffer())
        .catch(() => {});
      healthMax = Math.max(healthMax, performance.now() - t0);
      await sleep(100);
    }
    const { code, err } = await r;
    return code === 0
      ? `held 3 s, released; /healthz max ${healthMax.toFixed(0)} ms meanwhile`
      : `holder failed: ${err.slice(0, 200)}`;
  },
  {
    latencyExempt:
      'a foreign process holds the write lock for 3 s: by design a grant waits for it off the event loop (up to 3 s, then 503 busy), so no grant can be answered sooner; the server keeps answering everything else',
  },
);

await attack(`CLI sync import of ${BIG_BUNDLE.toLocaleString('en-US')} records`, async () => {
  const t0 = performance.now();
  const args = ['--data-dir', dataDir, '--json', 'sync', 'import', bundle];
  const r = await runCollect(EXE, args, 300_000);
  return `exit ${r.code} in ${((performance.now() - t0) / 1000).toFixed(1)} s${r.code === 0 ? '' : `: ${r.out.slice(0, 200)}`}`;
});

await attack('second serve, init --force on the live data dir', async () => {
  const second = cli(['--data-dir', dataDir, 'serve', '--host', '127.0.0.1', '--port', '0'], {
    timeout: 5000,
  });
  const force = cli(['--data-dir', dataDir, 'init', '--force'], { timeout: 10_000 });
  // Refused: it ended by itself, before the time-out, with a failure (a server that started would run on).
  const refusedSecond = second.error === undefined && second.status !== 0;
  const refusedForce = force.status !== 0 && existsSync(join(dataDir, 'license.db'));
  const why = (r) =>
    (r.stderr || '').split('\n').find((l) => l.startsWith('error[')) ??
    `exit ${r.status ?? r.signal}`;
  return `second serve ${refusedSecond ? `refused (${why(second)})` : `NOT refused (${second.status ?? second.signal})`}; init --force ${refusedForce ? `refused (${why(force)})` : `NOT refused (${force.status})`}`;
});

if (mounted) {
  await attack('disk full', async () => {
    const filler = join(dataParent, 'filler');
    spawnSync('sh', ['-c', `cat /dev/zero > ${JSON.stringify(filler)} 2>/dev/null; true`]);
    await sleep(WINDOW_MS / 2);
    const ready = await fetch(`${server.url}/readyz`)
      .then((r) => r.status)
      .catch(() => 0);
    unlinkSync(filler);
    await sleep(WINDOW_MS / 2);
    const readyAfter = await fetch(`${server.url}/readyz`)
      .then((r) => r.status)
      .catch(() => 0);
    return `/readyz ${ready} while full, ${readyAfter} after space came back`;
  });
} else {
  results.push({ attack: 'disk full', saw: diskNote });
}

await attack('SIGTERM with 64 requests in flight', async () => {
  const url = new URL(server.url);
  const body = JSON.stringify({
    product_id: 'chaos-app',
    tenant_id: 'chaos',
    subject_type: 'user',
    subject_id: 'burst',
  });
  const req = `POST /v1/license/lease HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  clientOn = false;
  await Promise.all(loops);
  const answers = [];
  const socks = [];
  for (let i = 0; i < 64; i++) {
    answers.push(
      new Promise((resolve) => {
        const s = net.connect(Number(url.port), url.hostname);
        socks.push(s);
        let got = '';
        s.setEncoding('latin1');
        s.on('connect', () => s.write(req, 'latin1'));
        s.on('data', (d) => (got += d));
        s.on('error', () => resolve(got));
        s.on('close', () => resolve(got));
        setTimeout(() => {
          s.destroy();
          resolve(got);
        }, 15_000);
      }),
    );
  }
  server.expectedExit = true;
  await sleep(2);
  process.kill(server.pid, 'SIGTERM');
  const got = await Promise.all(answers);
  const complete = got.filter((a) => /^HTTP\/1\.1 \d{3}/.test(a)).length;
  const t0 = performance.now();
  while (!server.exit && performance.now() - t0 < 15_000) await sleep(50);
  return `${complete}/64 answered; exit ${JSON.stringify(server.exit)}`;
});
clearInterval(rssTimer);

// ---- the table -----------------------------------------------------------------------------------
const pct = (arr, p) => {
  if (arr.length === 0) return null;
  const s = [...arr].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const rows = results.map((r) => {
  const b = samples.get(r.attack) ?? {
    ms: [],
    errors: 0,
    unexpected5xx: 0,
    expected5xx: 0,
    statuses: {},
    errorKinds: {},
  };
  return {
    attack: r.attack,
    saw: r.saw,
    client_requests: b.ms.length,
    client_errors: b.errors,
    client_error_kinds: b.errorKinds,
    client_statuses: b.statuses,
    p50_ms: pct(b.ms, 50),
    p99_ms: pct(b.ms, 99),
    max_ms: b.ms.length ? Math.max(...b.ms) : null,
    rss_peak_mb: rssPeak.get(r.attack) ?? null,
    unexpected_5xx: b.unexpected5xx,
    expected_5xx: b.expected5xx,
    crashes: crashes.get(r.attack) ?? 0,
    latency_exempt: r.latency_exempt,
  };
});
const f = (v, d = 0) =>
  v === null || v === undefined ? '-' : typeof v === 'number' ? v.toFixed(d) : String(v);
const head = ['attack', 'client n', 'p50 ms', 'p99 ms', 'max ms', 'RSS peak MB', '5xx', 'crashes'];
const lines = rows.map((r) => [
  r.attack,
  f(r.client_requests),
  f(r.p50_ms, 1),
  f(r.p99_ms, 1),
  `${f(r.max_ms, 1)}${r.latency_exempt ? '*' : ''}`,
  f(r.rss_peak_mb),
  `${r.unexpected_5xx}${r.expected_5xx ? ` (+${r.expected_5xx} 507)` : ''}${r.client_errors ? ` +${r.client_errors} net err` : ''}`,
  f(r.crashes),
]);
const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
const fmt = (l) =>
  l.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
console.log(
  `\n${fmt(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${lines.map(fmt).join('\n')}`,
);
// The last attack ends the server on purpose; its own answers are the burst's, not the client's.
const measured = rows.filter((r) => r.client_requests > 0);
const totals = {
  crashes: rows.reduce((a, r) => a + r.crashes, 0),
  unexpected_5xx: rows.reduce((a, r) => a + r.unexpected_5xx, 0),
  client_errors: measured.reduce((a, r) => a + r.client_errors, 0),
  rss_peak_mb: Math.max(...rows.map((r) => r.rss_peak_mb ?? 0)),
  client_max_ms: Math.max(...measured.filter((r) => !r.latency_exempt).map((r) => r.max_ms ?? 0)),
};
const pass = {
  crashes: totals.crashes <= TARGETS.crashes,
  unexpected_5xx: totals.unexpected_5xx <= TARGETS.unexpected_5xx && totals.client_errors === 0,
  rss_peak_mb: totals.rss_peak_mb < TARGETS.rss_peak_mb,
  client_max_ms: totals.client_max_ms < TARGETS.client_max_ms,
};
for (const r of rows.filter((x) => x.latency_exempt))
  console.log(`* ${r.attack}: not held to the latency target: ${r.latency_exempt}`);
console.log(`\nwhat each attack saw:\n${rows.map((r) => `  ${r.attack}: ${r.saw}`).join('\n')}`);
console.log(
  `\ntargets: crashes ${totals.crashes} (0) ${pass.crashes ? 'ok' : 'MISSED'}; unexpected 5xx ${totals.unexpected_5xx} + network errors ${totals.client_errors} (0) ${pass.unexpected_5xx ? 'ok' : 'MISSED'}; ` +
    `RSS peak ${totals.rss_peak_mb.toFixed(0)} MB (< ${TARGETS.rss_peak_mb}) ${pass.rss_peak_mb ? 'ok' : 'MISSED'}; client max ${totals.client_max_ms.toFixed(0)} ms (< ${TARGETS.client_max_ms}) ${pass.client_max_ms ? 'ok' : 'MISSED'}`,
);
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
writeFileSync(
  join(root, 'bench', 'results', 'chaos.json'),
  `${JSON.stringify({ when: new Date().toISOString(), quick: QUICK, window_ms: WINDOW_MS, targets: TARGETS, totals, pass, rows }, null, 2)}\n`,
);
console.log('written: bench/results/chaos.json');
process.exitCode = process.env.CHAOS_STRICT === '1' && Object.values(pass).some((p) => !p) ? 1 : 0;
