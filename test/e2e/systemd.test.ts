// packaging/bp-license-server.service: systemd's own checker accepts it with ExecStart pointing at
// the executable the global setup built, and it says what the README's install section promises.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { killStrays, ROOT, runProcess, startServe } from '../spawn.ts';
import { MAX_CONNECTIONS } from '../../src/http/limits.ts';

const UNIT = readFileSync(path.join(ROOT, 'packaging', 'bp-license-server.service'), 'utf8');
const INSTALLED = '/usr/local/bin/bp-license-server';
const ANALYZE = '/usr/bin/systemd-analyze';
/** What `serve` takes to drain on SIGTERM at most (README, Operations, "Stopping"). */
const DRAIN_SECONDS = 10;

const dir = mkdtempSync(path.join(tmpdir(), 'bpls-systemd-'));
afterAll(() => {
  killStrays();
  rmSync(dir, { recursive: true, force: true });
});

/** Every value of a key in the unit, comments skipped. */
function values(key: string, unit = UNIT): string[] {
  return unit
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));
}

/** Runs `systemd-analyze verify` on a copy of the unit text; the lines it printed about it. */
function verify(text: string, name: string): { status: number | null; complaints: string[] } {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  const r = spawnSync(ANALYZE, ['verify', file], { encoding: 'utf8', timeout: 60_000 });
  // verify exits 0 even for an unknown key or a bad value: each is a line naming the unit.
  const complaints = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.includes(name));
  return { status: r.status, complaints };
}

describe('the systemd unit', () => {
  it('passes systemd-analyze verify with ExecStart on the built executable', () => {
    // Never skipped: .ci/run installs it (Debian's systemd package).
    expect(existsSync(ANALYZE), `${ANALYZE} is missing: apt-get install systemd`).toBe(true);
    const exe = path.join(ROOT, 'dist', 'bp-license-server');
    expect(existsSync(exe), 'the global setup builds dist/bp-license-server').toBe(true);
    expect(UNIT).toContain(`ExecStart=${INSTALLED} serve `);
    const r = verify(UNIT.replaceAll(INSTALLED, exe), 'bp-license-server.service');
    expect(r.complaints).toEqual([]);
    expect(r.status).toBe(0);

    // The check can fail: a misspelt key, a bad value, a missing executable are each reported.
    const broken = verify(
      UNIT.replaceAll(INSTALLED, exe)
        .replace('ProtectHome=yes', 'ProtectHome=sometimes')
        .replace('PrivateTmp=yes', 'PrivatTmp=yes'),
      'broken.service',
    );
    expect(broken.complaints.join('\n')).toMatch(/ProtectHome|protect home/i);
    expect(broken.complaints.join('\n')).toContain("Unknown key 'PrivatTmp'");
    const missing = path.join(dir, 'no-such-executable');
    expect(
      verify(UNIT.replaceAll(INSTALLED, missing), 'missing.service').complaints.join('\n'),
    ).toContain('not executable');
  });

  it('runs serve as bp-license on /var/lib/bp-license-server, hardened, logging to journald', () => {
    const one = (key: string) => {
      const v = values(key);
      expect(v, key).toHaveLength(1);
      return v[0]!;
    };
    expect(one('User')).toBe('bp-license');
    expect(one('Group')).toBe('bp-license');
    expect(one('StateDirectory')).toBe('bp-license-server');
    expect(one('ExecStart')).toBe(`${INSTALLED} serve --data-dir /var/lib/bp-license-server`);
    expect(one('EnvironmentFile')).toBe('-/etc/bp-license-server/env');
    // The server does not implement sd_notify: Type=notify would wait for a message never sent.
    expect(one('Type')).toBe('exec');
    expect(one('Restart')).toBe('on-failure');
    expect(one('KillSignal')).toBe('SIGTERM');
    expect(Number.parseInt(one('TimeoutStopSec'), 10)).toBeGreaterThan(DRAIN_SECONDS);
    expect(Number(one('LimitNOFILE'))).toBeGreaterThan(MAX_CONNECTIONS);
    expect(one('UMask')).toBe('0077');
    expect(one('StandardError')).toBe('journal');
    for (const key of [
      'NoNewPrivileges',
      'ProtectHome',
      'PrivateTmp',
      'PrivateDevices',
      'ProtectKernelTunables',
      'ProtectKernelModules',
      'ProtectKernelLogs',
      'ProtectControlGroups',
    ])
      expect(one(key), key).toBe('yes');
    expect(one('ProtectSystem')).toBe('strict');
    expect(one('RestrictAddressFamilies').split(' ').sort()).toEqual([
      'AF_INET',
      'AF_INET6',
      'AF_UNIX',
    ]);
    expect(one('SystemCallFilter')).toBe('@system-service');
    // V8's JIT writes code and runs it: MemoryDenyWriteExecute would stop Node at start.
    expect(values('MemoryDenyWriteExecute')).toEqual([]);
    expect(UNIT).toMatch(/# MemoryDenyWriteExecute=yes is left off on purpose: V8's JIT/);
  });
});

/** Every system call of a systemd syscall-filter group, its nested groups expanded. */
function syscallsOf(group: string, seen = new Set<string>()): Set<string> {
  const out = new Set<string>();
  if (seen.has(group)) return out;
  seen.add(group);
  const text = spawnSync(ANALYZE, ['syscall-filter', group], { encoding: 'utf8' }).stdout;
  for (const line of text.split('\n').slice(1)) {
    const name = line.trim();
    if (name === '' || name.startsWith('#')) continue;
    for (const s of name.startsWith('@') ? syscallsOf(name, seen) : [name]) out.add(s);
  }
  return out;
}

describe('SystemCallFilter=@system-service', () => {
  it('allows every system call the executable makes to init, serve, grant, renew, release and drain', async () => {
    const STRACE = '/usr/bin/strace';
    // Never skipped: .ci/run installs both (Debian's systemd and strace packages).
    for (const tool of [ANALYZE, STRACE])
      expect(existsSync(tool), `${tool} is missing: apt-get install systemd strace`).toBe(true);
    const exe = path.join(ROOT, 'dist', 'bp-license-server');
    const data = path.join(dir, 'data');
    const env = { BPLS_NATIVE_CACHE_DIR: path.join(dir, 'cache') };
    const trace = path.join(dir, 'trace');
    const traced: [string, string[]] = [STRACE, ['-f', '-qq', '-o', trace, exe]];
    const init = await runProcess(traced, ['init', '--data-dir', data, '--json'], { env });
    expect(init.code, init.stderr).toBe(0);
    const token = (JSON.parse(init.stdout) as { admin_token: string }).admin_token;
    const initCalls = readFileSync(trace, 'utf8');

    const server = await startServe(
      traced,
      ['--data-dir', data, '--host', '127.0.0.1', '--port', '0', '--no-sync-dir'],
      { env },
    );
    const post = (p: string, body: unknown, auth = false) =>
      fetch(`${server.base}${p}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(auth ? { authorization: `Bearer ${token}` } : {}),
        },
        body: JSON.stringify(body),
      });
    expect((await fetch(`${server.base}/readyz`)).status).toBe(200);
    expect(
      (
        await post(
          '/v1/entitlements',
          {
            tenant_id: 't',
            product_id: 'p',
            policy_json: { type: 'concurrent', max_seats: 2 },
            starts_at: '2020-01-01T00:00:00Z',
            ends_at: '2999-01-01T00:00:00Z',
          },
          true,
        )
      ).status,
    ).toBe(201);
    const lease = await post('/v1/license/lease', {
      tenant_id: 't',
      product_id: 'p',
      subject_type: 'user',
      subject_id: 'alice',
    });
    expect(lease.status).toBe(201);
    const { lease_id } = (await lease.json()) as { lease_id: string };
    expect((await post('/v1/license/lease/renew', { lease_id })).status).toBe(200);
    expect((await post('/v1/license/lease/release', { lease_id })).status).toBe(200);
    expect((await fetch(`${server.base}/openapi.json`)).status).toBe(200);
    // The server is strace's child: SIGTERM goes to it (its pid starts the trace), so it drains.
    const pid = Number(/^(\d+) /.exec(readFileSync(trace, 'utf8'))![1]);
    process.kill(pid, 'SIGTERM');
    expect((await server.exited).code).toBe(0);

    const used = new Set<string>();
    for (const text of [initCalls, readFileSync(trace, 'utf8')])
      for (const m of text.matchAll(/^\d+ +([a-z0-9_]+)\(/gm)) used.add(m[1]!);
    // The trace saw the server at work: it listened, took connections and synced the database.
    for (const call of ['listen', 'accept4', 'fsync', 'mprotect'])
      expect([...used]).toContain(call);
    const allowed = syscallsOf('@system-service');
    expect([...used].filter((c) => !allowed.has(c))).toEqual([]);
  }, 60_000);
});
