// The newcomer's path, for real: a fresh clone of the committed tree (HEAD), `make run` in it, then
// every command block of the README pasted in order into one bash session against that demo
// server, answers checked where the README shows them, ending with a lease verified offline by the
// README's own snippet. Blocks that cannot run here carry a visible skip marker in the README, and
// the skipped set is pinned below, so nothing opts out silently. The Rust snippet and the cargo
// example are skipped here because `make test` compiles and runs them against the executable
// (clients/rust/tests/server.rs). The conventions: test/readme-blocks.ts and README "Development".
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.ts';
import {
  mismatches,
  printsMatch,
  readmeBlocks,
  segment,
  sessionScript,
  type Block,
} from '../readme-blocks.ts';
import { ROOT, runProcess } from '../spawn.ts';

/** The first line of each block the README marks `readme-test: skip`, in order: no more, no less. */
const SKIPPED = [
  'make run     # install, build, create ./demo-data with demo entitlements (once), serve on 127.0.0.1:8080',
  'make binary                                   # on a build machine with npm access',
  'useradd --system --user-group --no-create-home --home-dir /var/lib/bp-license-server --shell /usr/sbin/nologin bp-license',
  // The seed's two requests as it writes them (port 8080); the $BASE form under each is run.
  'curl -X POST "http://localhost:8080/v1/entitlements" \\',
  'curl -X POST http://localhost:8080/v1/license/lease -H "Content-Type: application/json" \\',
  'use bigpicture_sdk::Client;',
  'cd clients/rust && BIGPICTURE_TENANT=customer-tenant-id cargo run --example seed',
  // High availability on PostgreSQL: a PostgreSQL server and a load balancer of the site's own
  // (test/e2e/pg-failover.test.ts runs the pair for real).
  `psql -c "CREATE ROLE bpls LOGIN PASSWORD '…'"   # as PostgreSQL's administrator`,
  'bp-license-server --data-dir /var/lib/bp-license-server serve --host 0.0.0.0 --port 8080',
  '# /etc/haproxy/haproxy.cfg',
];

let work: string;
let clone: string;
let port: number;
let make: ChildProcess | undefined;
let makeOutput = '';
let env: NodeJS.ProcessEnv;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port: p } = srv.address() as { port: number };
      srv.close(() => resolve(p));
    });
  });
}

/** Starts `make run PORT=port` in the clone, in its own process group, until it serves. */
function startMakeRun(): Promise<void> {
  make = spawn('make', ['run', `PORT=${port}`], {
    cwd: clone,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const listening = `listening on http://127.0.0.1:${port}`;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`make run did not serve within 120 s:\n${makeOutput}`)),
      120_000,
    );
    const onData = (d: Buffer) => {
      makeOutput += d.toString();
      if (makeOutput.includes(listening)) {
        clearTimeout(timer);
        resolve();
      }
    };
    make!.stdout!.on('data', onData);
    make!.stderr!.on('data', onData);
    make!.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`make run ended (${code ?? signal}) before serving:\n${makeOutput}`));
    });
  });
}

/** make and the server it started (one process group, ours): SIGTERM, then SIGKILL after 10 s. */
async function stopMakeRun(): Promise<void> {
  const child = make;
  if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const kill = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // gone already
    }
  };
  kill('SIGTERM');
  const timer = setTimeout(() => kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** The commands the newcomer's path uses, with the Debian package each comes in. */
const TOOLS = { git: 'git', make: 'make', bash: 'bash', curl: 'curl', timeout: 'coreutils' };

beforeAll(async () => {
  for (const [tool, pkg] of Object.entries(TOOLS)) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      throw new Error(
        `${tool} is missing: the README's commands need it (apt-get install -y ${pkg})`,
      );
    }
  }
  // make's install step would run `npm ci` when the stamp is missing or older than the lock file;
  // in the clone that would empty the project's node_modules through the link below.
  if (!existsSync(`${ROOT}node_modules/.install-stamp`)) {
    throw new Error('node_modules/.install-stamp is missing: run make install first');
  }
  work = tempDir('bpls-readme-');
  clone = path.join(work, 'clone');
  const head = execFileSync('git', ['-C', ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
  execFileSync('git', ['clone', '--quiet', '--no-checkout', ROOT, clone]);
  execFileSync('git', ['-C', clone, 'checkout', '--quiet', head]);
  // A fresh clone would spend minutes in `npm ci`; the project's own packages stand in for it
  // (linked, never written), and the package files are dated before the stamp so make keeps them.
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(clone, 'node_modules'));
  const old = new Date('2020-01-01T00:00:00Z');
  for (const f of ['package.json', 'package-lock.json']) utimesSync(path.join(clone, f), old, old);
  // Should make still want npm, it finds this one, which refuses.
  const noNpm = path.join(work, 'no-npm');
  mkdirSync(noNpm);
  writeFileSync(
    path.join(noNpm, 'npm'),
    '#!/bin/sh\necho "readme test: npm $* refused (node_modules is the project\'s, linked)" >&2\nexit 1\n',
  );
  chmodSync(path.join(noNpm, 'npm'), 0o755);
  env = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !/^(BPLS_|MAKE|MFLAGS$|BASE$|T$|LOCAL_API_TOKEN$|ENT$|LEASE$)/.test(k),
    ),
  );
  // As a reader who put bin/ on PATH (README: "or put bin/ on your PATH"), on the project's Node 24.
  env.PATH = [`${clone}/bin`, `${clone}/node_modules/.bin`, noNpm, process.env.PATH].join(':');
  port = await freePort();
  await startMakeRun();
  // make run tells the reader the README's variables for the port it serves on.
  expect(makeOutput).toContain(`  export BASE=http://127.0.0.1:${port}\n`);
  expect(makeOutput).toContain('  export LOCAL_API_TOKEN=$(cat demo-data.admin-token)\n');
}, 180_000);

afterAll(async () => {
  await stopMakeRun();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the README, run as written in a fresh clone against make run', () => {
  it('skips only the blocks it names, and every js block is saved or skipped', () => {
    const blocks = readmeBlocks(readFileSync(path.join(clone, 'README.md'), 'utf8'));
    const skipped = blocks.filter((b) => b.marker?.kind === 'skip');
    expect(skipped.map((b) => b.text.split('\n')[0])).toEqual(SKIPPED);
    const unrun = (b: Block) =>
      (b.lang === 'js' && b.marker?.kind !== 'save' && b.marker?.kind !== 'skip') ||
      (b.lang === 'rust' && b.marker?.kind !== 'skip') ||
      !['sh', 'js', 'rust', 'json', ''].includes(b.lang);
    expect(blocks.filter(unrun).map((b) => `line ${b.line}: ${b.lang}`)).toEqual([]);
  });

  it('runs every block in one shell, each answer as shown, and a lease verified offline', async () => {
    const blocks = readmeBlocks(readFileSync(path.join(clone, 'README.md'), 'utf8'));
    const { script, checked } = sessionScript(blocks, port);
    // Every saved file is run by a later command.
    for (const b of blocks) {
      if (b.marker?.kind === 'save') expect(script).toContain(`node ${b.marker.file}`);
    }
    const file = path.join(work, 'readme-session.sh');
    writeFileSync(file, script);
    const run = await runProcess(['bash', []], [file], { cwd: clone, env, timeoutMs: 90_000 });
    expect(run.code, `${run.stderr.slice(-3000)}\n(make run: ${makeOutput.slice(-1000)})`).toBe(0);

    const failures: string[] = [];
    for (const { id, command } of checked) {
      const out = segment(run.stdout, id);
      const err = segment(run.stderr, id);
      const where = `README line ${command.line} (${command.expect!.source})`;
      const expect_ = command.expect!;
      if (expect_.kind === 'prints') {
        if (!printsMatch(expect_.pattern, out)) failures.push(`${where}: printed ${out}`);
        continue;
      }
      const status = [...err.matchAll(/^@@status (\d{3})$/gm)].at(-1)?.[1];
      if (Number(status) !== expect_.status) {
        failures.push(`${where}: status ${status}, body ${out}`);
        continue;
      }
      let body: any;
      try {
        body = JSON.parse(out);
      } catch {
        failures.push(`${where}: the answer is not JSON: ${out}`);
        continue;
      }
      if (expect_.code !== undefined && body?.error?.code !== expect_.code) {
        failures.push(`${where}: error ${JSON.stringify(body?.error)}`);
      }
      if (expect_.fields !== undefined) {
        failures.push(...mismatches(expect_.fields, body).map((m) => `${where}: ${m}`));
      }
    }
    expect(failures).toEqual([]);
    // Enough of the README is checked that a README whose examples fail cannot pass.
    expect(checked.length).toBeGreaterThanOrEqual(15);

    // The end of the path: the README's verify snippet leased and verified a token offline, and
    // the lease is in the demo's database as it says.
    const verify = checked.find((c) => c.command.text === 'node verify.mjs');
    expect(verify, 'the README runs node verify.mjs').toBeDefined();
    const line =
      /^verified user:user_123 (lease_\S+) until (\S+Z), features: feature-a, feature-b$/m.exec(
        segment(run.stdout, verify!.id),
      );
    expect(line, segment(run.stdout, verify!.id)).not.toBeNull();
    expect(Date.parse(line![2]!)).toBeGreaterThan(Date.now());
    // The example program's lease. Whether timeout's SIGINT released it is not asserted here: on
    // a loaded machine the release may outlast the SDK's 3 s at exit, and the release at a signal
    // is proven without a race by clients/typescript/test/lease.test.ts.
    const example = checked.find((c) => c.command.text.includes('examples/lease.mjs'));
    const leased = /^leased (lease_\S+) until/m.exec(segment(run.stdout, example!.id));
    expect(leased).not.toBeNull();

    const db = new Database(path.join(clone, 'demo-data', 'license.db'), { readonly: true });
    try {
      const row = (id: string) =>
        db
          .prepare(
            `SELECT l.subject_id, l.state, e.tenant_id, e.product_id FROM leases l
             JOIN entitlements e ON e.id = l.entitlement_id WHERE l.id = ?`,
          )
          .get(id);
      expect(row(line![1]!)).toMatchObject({
        subject_id: 'user_123',
        tenant_id: 'customer-tenant-id',
        product_id: 'your-product-id',
      });
      expect(row(leased![1]!)).toMatchObject({
        subject_id: 'user_123',
        tenant_id: 'customer-tenant-id',
        product_id: 'your-product-id',
      });
      // The seed's 2024 request made its entitlement, expired on arrival, as the README says.
      expect(
        db
          .prepare(`SELECT count(*) AS n FROM entitlements WHERE tenant_id = 'local-tenant-id'`)
          .get(),
      ).toEqual({ n: 1 });
    } finally {
      db.close();
    }
  }, 120_000);
});
