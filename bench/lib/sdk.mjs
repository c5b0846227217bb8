// SDK token verification per second (targets: TypeScript >= 20,000/s, Rust >= 50,000/s, one core):
// a real lease token from the server under test and its published keys, verified in a loop by
// each SDK in a child process pinned to one core (taskset, when the machine has it).
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

function pinned(cmd, args, opts) {
  const taskset = existsSync('/usr/bin/taskset');
  return spawnSync(taskset ? '/usr/bin/taskset' : cmd, taskset ? ['-c', '0', cmd, ...args] : args, {
    encoding: 'utf8',
    timeout: 900_000,
    ...opts,
  });
}

function lastJson(r, what) {
  if (r.status !== 0)
    throw new Error(
      `${what} exited ${r.status ?? r.signal}: ${(r.stderr || r.stdout || '').trim().slice(-600)}`,
    );
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

/**
 * @param {{ root: string, work: string, token: string, keys: unknown, product: string, ms: number }} o
 * @returns {{ ts_verify_per_s: number|null, node_raw_ed25519_verify_per_s: number|null, rust_verify_per_s: number|null, ring_raw_ed25519_verify_per_s: number|null, note: string }}
 */
export function measureSdkVerify({ root, work, token, keys, product, ms }) {
  const file = join(work, 'sdk-token.json');
  writeFileSync(file, JSON.stringify({ token, keys, product }));
  const notes = [];
  let ts = null;
  let tsRaw = null;
  let rust = null;
  let rustRaw = null;
  try {
    const r = lastJson(
      pinned(process.execPath, [join(root, 'bench/sdk-verify.mjs'), file, String(ms)]),
      'TypeScript SDK verify',
    );
    ts = r.verify_per_s;
    tsRaw = r.raw_ed25519_verify_per_s;
  } catch (err) {
    notes.push(`TypeScript: ${err.message}`);
  }
  try {
    const dir = join(root, 'clients/rust');
    const build = spawnSync(
      'cargo',
      ['build', '--release', '--offline', '--example', 'verify_bench'],
      { cwd: dir, encoding: 'utf8', timeout: 900_000 },
    );
    if (build.status !== 0)
      throw new Error(`cargo build --release: ${(build.stderr || '').trim().slice(-600)}`);
    const r = lastJson(
      pinned(join(dir, 'target/release/examples/verify_bench'), [file, String(ms)], { cwd: dir }),
      'Rust SDK verify',
    );
    rust = r.verify_per_s;
    rustRaw = r.raw_ed25519_verify_per_s;
  } catch (err) {
    notes.push(`Rust: ${err.message}`);
  }
  return {
    ts_verify_per_s: ts,
    node_raw_ed25519_verify_per_s: tsRaw,
    rust_verify_per_s: rust,
    ring_raw_ed25519_verify_per_s: rustRaw,
    note:
      notes.join('; ') ||
      'one lease token from the server under test, verified in a loop (key list cached, as a client does), one thread pinned to one core',
  };
}
