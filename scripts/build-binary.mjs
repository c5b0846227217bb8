// Builds the single executable dist/bp-license-server with Node's Single Executable Applications
// (Node SEA, built in since Node 20; `pkg` is unmaintained and cannot carry Node 24), offline:
//   1. esbuild bundles the CLI to dist/cli.cjs, and again, compact, to dist/sea-main.cjs
//      (scripts/build.mjs);
//   2. dist/sea-config.json -> `node --experimental-sea-config` -> dist/sea-prep.blob, with
//      dist/sea-main.cjs as the main script, the better-sqlite3 addon as the asset
//      "better_sqlite3.node" and its sha256 as "better_sqlite3.node.sha256" (src/storage/native.ts
//      loads them);
//   3. a copy of this Node 24, stripped, gets the blob injected by postject.
// Offline, a few seconds. Run as `node scripts/build-binary.mjs` with Node 24 first on PATH.
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCli } from './build.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);

const SENTINEL_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const ADDON_ASSET = 'better_sqlite3.node'; // the key src/storage/native.ts asks for
const ADDON_SHA256_ASSET = 'better_sqlite3.node.sha256'; // its sha256 in hex, so a start need not read the addon

function fail(message) {
  throw new Error(`build-binary: ${message}`);
}

function checkHost() {
  if (!process.versions.node.startsWith('24.')) {
    fail(
      `needs Node 24 (this is ${process.version} at ${process.execPath}): the binary is a copy of the ` +
        `running node. Put node_modules/.bin first on PATH (make binary does).`,
    );
  }
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    fail(`only linux-x64 is supported for now (this is ${process.platform}-${process.arch})`);
  }
  const glibc = process.report.getReport().header.glibcVersionRuntime;
  if (!glibc) fail('needs a glibc Linux (musl is not supported for now)');
}

function addonPath() {
  const pkgDir = path.dirname(require.resolve('better-sqlite3/package.json'));
  const file = path.join(pkgDir, 'prebuilds', 'linux-x64.node');
  try {
    if (!statSync(file).isFile()) throw new Error('not a file');
  } catch {
    fail(`better-sqlite3's prebuilt addon is missing: ${file} (run npm ci)`);
  }
  return path.relative(root, file);
}

function hasStrip() {
  return spawnSync('strip', ['--version'], { stdio: 'ignore' }).status === 0;
}

// postject's LIEF (WebAssembly) prints one harmless "Can't find string offset for section name
// '.note...'" per note section of Node's ELF through console.warn; it binds console.warn when each
// inject() creates its module, so a filter installed around the call drops those lines.
async function injectBlob(exe, blobData) {
  const { inject } = require('postject');
  const warn = console.warn;
  console.warn = (...args) => {
    if (!/^warning: Can't find string offset for section name/.test(String(args[0]))) warn(...args);
  };
  try {
    await inject(exe, 'NODE_SEA_BLOB', blobData, { sentinelFuse: SENTINEL_FUSE });
  } finally {
    console.warn = warn;
  }
}

/**
 * @param {{ bundle?: boolean }} [options] bundle: false reuses an existing dist/cli.cjs (the test
 *   suite's global setup has just built it, and rewriting it in place while other test files spawn
 *   it could let them read a half-written file).
 */
export async function buildBinary(options = {}) {
  checkHost();
  const dist = path.join(root, 'dist');
  mkdirSync(dist, { recursive: true });
  return withBuildLock(dist, () => build(dist, options));
}

// Two test files that need the executable (or a test and `make binary`) may build at once, and
// builds share dist/sea-main.cjs and dist/sea-prep.blob: one at a time, by an atomic mkdir. A lock
// whose holder is gone (killed mid-build) is taken over.
async function withBuildLock(dist, fn) {
  const lock = path.join(dist, '.build-binary.lock');
  const giveUp = Date.now() + 300_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    if (lockHolderGone(lock)) {
      rmSync(lock, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > giveUp)
      fail(`another build has held ${lock} for 5 minutes; remove it if no build runs`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  try {
    writeFileSync(path.join(lock, 'pid'), String(process.pid));
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

function lockHolderGone(lock) {
  let pid;
  try {
    pid = Number(readFileSync(path.join(lock, 'pid'), 'utf8'));
  } catch {
    // Just made, its pid not written yet (or a holder that died in between: the deadline covers it).
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return err.code === 'ESRCH';
  }
}

async function build(dist, { bundle = true }) {
  const started = performance.now();
  if (bundle || !existsSync(path.join(dist, 'cli.cjs'))) await buildCli();
  // The executable embeds its own, compact build of the same sources.
  await buildCli({ outfile: 'dist/sea-main.cjs', compact: true });
  const blob = path.join(dist, 'sea-prep.blob');
  const exe = path.join(dist, 'bp-license-server');
  const seaConfig = {
    main: 'dist/sea-main.cjs',
    output: 'dist/sea-prep.blob',
    disableExperimentalSEAWarning: true,
    useCodeCache: false, // no gain measured, and it makes builds non-reproducible
    useSnapshot: false,
    // No debugging or code-injection channel: NODE_OPTIONS is ignored (no --require, --import,
    // --inspect from the environment), options on the command line go to the CLI (which refuses
    // them), and SIGUSR1 does not open the inspector (--disable-sigusr1; the CLI ignores the signal).
    execArgvExtension: 'none',
    // V8 sizes the young generation by the machine's memory (128 MB here); 16 MB keeps RSS bounded
    // (100k leases: ~230 MB instead of ~330) at the same throughput.
    execArgv: ['--max-semi-space-size=16', '--disable-sigusr1'],
    assets: { [ADDON_ASSET]: addonPath(), [ADDON_SHA256_ASSET]: 'dist/addon.sha256' },
  };
  writeFileSync(
    path.join(dist, 'addon.sha256'),
    createHash('sha256').update(readFileSync(addonPath())).digest('hex'),
  );
  writeFileSync(path.join(dist, 'sea-config.json'), `${JSON.stringify(seaConfig, null, 2)}\n`);

  rmSync(blob, { force: true });
  // It says "Wrote single executable preparation blob to ..." on stderr: show it only on failure.
  const prep = spawnSync(process.execPath, ['--experimental-sea-config', 'dist/sea-config.json'], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (prep.status !== 0) {
    fail(
      `node --experimental-sea-config failed (${prep.status ?? prep.signal}):\n${prep.stdout}${prep.stderr}`,
    );
  }

  // Assembled under a temporary name and renamed at the end, so a concurrent build or test run
  // never sees a half-made executable.
  const tmp = path.join(dist, `.bp-license-server.${process.pid}.tmp`);
  try {
    copyFileSync(process.execPath, tmp);
    chmodSync(tmp, 0o755);
    if (hasStrip()) {
      execFileSync('strip', [tmp], { stdio: 'inherit' });
    } else {
      console.warn('build-binary: `strip` not found; the executable is left unstripped (larger)');
    }
    await injectBlob(tmp, readFileSync(blob));
    chmodSync(tmp, 0o755);
    renameSync(tmp, exe);
  } finally {
    rmSync(tmp, { force: true });
  }

  const size = statSync(exe).size;
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `build-binary: ${path.relative(process.cwd(), exe) || exe} ${(size / 1e6).toFixed(1)} MB ` +
      `(${size} bytes) in ${seconds.toFixed(1)} s`,
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    await buildBinary();
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  }
}
