// Bundle import (BPSYNC/1): a 100,000-record snapshot, time and peak RSS of `sync import`.
//
//   vendor keygen --out DIR            -> the vendor key pair
//   init --vendor-key <k4.public>      -> a fresh server that trusts it
//   vendor sign --seq 1 --in content.json --out snapshot.bpsync   (not timed)
//   sync import snapshot.bpsync        timed; peak RSS by /usr/bin/time (%M), else /proc polling
//   sync export --out DIR              timed: the signed export of the 100,000 entitlements
//
// When the executable has no `vendor` and `sync` commands (the import not built yet), or a step
// fails, the figures are null and the note says why: never a made-up number.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mixedPolicy } from './shapes.mjs';

export const BUNDLE_RECORDS = 100_000;

function run(cmd, args) {
  return spawnSync(cmd[0], [...cmd[1], ...args], {
    encoding: 'utf8',
    timeout: 300_000,
    maxBuffer: 64 << 20,
  });
}

export function commandsOf(cmd) {
  const help = run(cmd, ['--help']).stdout ?? '';
  const section = help.split(/^Commands:$/m)[1] ?? '';
  return new Set([...section.matchAll(/^ {2}([a-z][\w-]*)/gm)].map((m) => m[1]));
}

/** The content `vendor sign --in` takes: a snapshot of 100,000 bundle-managed entitlements. */
export function bundleContent(count = BUNDLE_RECORDS) {
  const entitlements = new Array(count);
  for (let i = 0; i < count; i++) {
    entitlements[i] = {
      entitlement_id: `ent_bundle_${i}`,
      tenant_id: `bundle-tenant-${Math.floor(i / 10)}`,
      product_id: `bundle-product-${i % 7}`,
      policy_json: mixedPolicy(i),
      starts_at: '2020-01-01T00:00:00Z',
      ends_at: '2099-12-31T23:59:59Z',
      rev: 1,
    };
  }
  return { entitlements };
}

/** Runs a command to completion; returns its wall time and peak RSS (MB). */
function timedPeak(cmd, args, workDir) {
  if (existsSync('/usr/bin/time')) {
    const timeFile = join(workDir, 'time.txt');
    const t0 = performance.now();
    const r = spawnSync('/usr/bin/time', ['-f', '%M', '-o', timeFile, cmd[0], ...cmd[1], ...args], {
      encoding: 'utf8',
      timeout: 300_000,
      maxBuffer: 64 << 20,
    });
    const seconds = (performance.now() - t0) / 1000;
    const maxKb = Number(readFileSync(timeFile, 'utf8').trim().split('\n').at(-1));
    return Promise.resolve({
      status: r.status,
      signal: r.signal,
      stdout: r.stdout,
      stderr: r.stderr,
      seconds,
      peakMb: maxKb / 1024,
      how: '/usr/bin/time %M',
    });
  }
  // Fallback: poll VmHWM while it runs (bounded by the 300 s timeout).
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(cmd[0], [...cmd[1], ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let peakKb = 0;
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const poll = setInterval(() => {
      try {
        const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) peakKb = Math.max(peakKb, Number(m[1]));
      } catch {
        // exited
      }
    }, 20);
    const kill = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('close', (status, signal) => {
      clearInterval(poll);
      clearTimeout(kill);
      resolve({
        status,
        signal,
        stdout,
        stderr,
        seconds: (performance.now() - t0) / 1000,
        peakMb: peakKb / 1024,
        how: '/proc VmHWM polling (20 ms)',
      });
    });
  });
}

export async function measureBundleImport(cmd, workDir) {
  const commands = commandsOf(cmd);
  if (!commands.has('vendor') || !commands.has('sync')) {
    const missing = ['vendor', 'sync'].filter((c) => !commands.has(c)).map((c) => `\`${c}\``);
    return {
      bundle_100k_s: null,
      bundle_peak_rss_mb: null,
      bundle_export_100k_s: null,
      note: `bundle import not built yet: the executable has no ${missing.join(' or ')} command (it has: ${[...commands].join(', ')})`,
    };
  }
  const dir = join(workDir, 'bundle');
  mkdirSync(dir, { recursive: true });
  const step = (what, args) => {
    const r = run(cmd, args);
    if (r.status !== 0)
      throw new Error(
        `${what}: \`${args.join(' ')}\` exited ${r.status ?? r.signal}: ${(r.stderr || r.stdout).trim().slice(0, 600)}`,
      );
    return JSON.parse(r.stdout);
  };
  try {
    const keys = step('vendor keygen', [
      '--json',
      'vendor',
      'keygen',
      '--out',
      join(dir, 'vendor-keys'),
    ]);
    const dataDir = join(dir, 'data');
    const init = step('init', [
      '--data-dir',
      dataDir,
      '--json',
      'init',
      '--vendor-key',
      keys.public_key,
    ]);
    const content = join(dir, 'content.json');
    writeFileSync(content, JSON.stringify(bundleContent()));
    const bundle = join(dir, 'snapshot.bpsync');
    const t0 = performance.now();
    const signed = step('vendor sign', [
      '--json',
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
    const signS = (performance.now() - t0) / 1000;
    const r = await timedPeak(
      cmd,
      ['--data-dir', dataDir, '--json', 'sync', 'import', bundle],
      dir,
    );
    if (r.status !== 0)
      throw new Error(
        `sync import exited ${r.status ?? r.signal}: ${(r.stderr || r.stdout).trim().slice(0, 600)}`,
      );
    let answer = null;
    try {
      answer = JSON.parse(r.stdout);
    } catch {
      // keep null
    }
    // The export of the 100,000 entitlements just imported (usage report, signed), timed alone.
    const t1 = performance.now();
    step('sync export', [
      '--data-dir',
      dataDir,
      '--json',
      'sync',
      'export',
      '--out',
      join(dir, 'outbox'),
    ]);
    const exportS = (performance.now() - t1) / 1000;
    return {
      bundle_100k_s: r.seconds,
      bundle_peak_rss_mb: r.peakMb,
      bundle_export_100k_s: exportS,
      note: `\`sync import\` of a ${BUNDLE_RECORDS.toLocaleString('en-US')}-record snapshot (${(statSync(bundle).size / 2 ** 20).toFixed(1)} MiB) into a fresh data dir, wall time of the whole process; peak RSS by ${r.how}`,
      bundle_records: signed.records ?? null,
      bundle_sign_s: signS,
      import_answer:
        answer && typeof answer === 'object'
          ? Object.fromEntries(
              Object.entries(answer).filter(([, v]) => typeof v !== 'object' || v === null),
            )
          : null,
    };
  } catch (err) {
    return {
      bundle_100k_s: null,
      bundle_peak_rss_mb: null,
      bundle_export_100k_s: null,
      note: `bundle import could not be measured: ${err.message}`,
    };
  }
}
