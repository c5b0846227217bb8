// Where better-sqlite3's native addon comes from.
//
// - Inside the single executable (Node SEA), the addon is an embedded asset. `require` there loads
//   built-ins only, so we write the asset once to a cache folder (file named by its sha256, written
//   atomically), load it with process.dlopen and hand the exports object to better-sqlite3 as
//   `nativeBinding`.
// - Run from the TypeScript sources (vitest, tsx), better-sqlite3 is a real package in
//   node_modules and finds its own addon: nothing to pass.
// - Run from the esbuild bundle (dist/cli.cjs, the bin shim), better-sqlite3's JS is inlined in the
//   bundle, so its own lookup (relative to its __dirname, now dist/) finds nothing. We load the
//   addon from the installed better-sqlite3 package instead.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import * as sea from 'node:sea';
import { makeDirs } from '../fs-dirs.ts';

/** The key of the addon in sea-config.json `assets` (see scripts/build-binary.mjs). */
export const SQLITE_ADDON_ASSET = 'better_sqlite3.node';
/** Its sha256 in hex, written at build time: a start that finds the addon cached never reads it. */
export const SQLITE_ADDON_SHA256_ASSET = 'better_sqlite3.node.sha256';

/** The addon could not be written to, or executed from, the native cache folder. */
export class NativeLoadError extends Error {
  readonly cacheDir: string;
  constructor(message: string, cacheDir: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NativeLoadError';
    this.cacheDir = cacheDir;
  }
}

let loaded: object | undefined;
let loadedFile: string | undefined;

/**
 * The better-sqlite3 addon to pass as `new Database(file, { nativeBinding })`, or undefined when
 * better-sqlite3 finds its own. Loads once per process: later calls return the same object
 * whatever `cacheDir` they pass.
 */
export function loadSqliteBinding(cacheDir: string): object | undefined {
  if (loaded !== undefined) return loaded;
  if (sea.isSea()) {
    loaded = loadFromSeaAsset(path.resolve(cacheDir));
  } else if (runningFromBundle()) {
    loaded = loadFromInstalledPackage();
  }
  return loaded;
}

/**
 * The addon file loadSqliteBinding() loaded (undefined before it ran, and from the sources, where
 * better-sqlite3 finds its own). A worker thread with its own connection dlopens this same file:
 * one SQLite library, one table of POSIX locks, for every connection of the process.
 */
export function sqliteAddonFile(): string | undefined {
  return loadedFile;
}

/**
 * Default native cache folder: `$XDG_CACHE_HOME/bp-license-server` (absolute, as XDG requires),
 * else `~/.cache/bp-license-server` when the home is usable (set, not "/", an existing folder;
 * `env.HOME`, else the system's idea of it), else `<dataDir>/.native-cache`.
 * (The `--native-cache-dir` flag and `BPLS_NATIVE_CACHE_DIR` are the caller's business.)
 */
export function defaultNativeCacheDir(env: NodeJS.ProcessEnv, dataDir: string): string {
  const xdg = env.XDG_CACHE_HOME;
  // The XDG spec says to ignore relative paths.
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'bp-license-server');
  const home = env.HOME !== undefined ? env.HOME : systemHomedir();
  if (usableHome(home)) return path.join(home, '.cache', 'bp-license-server');
  return path.join(dataDir, '.native-cache');
}

// Service accounts often have "/" or a missing folder such as /nonexistent as their home.
function usableHome(home: string): boolean {
  if (!home || home === '/' || !path.isAbsolute(home)) return false;
  try {
    return fs.statSync(home).isDirectory();
  } catch {
    return false;
  }
}

function systemHomedir(): string {
  try {
    return os.homedir();
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------------------------
// Inside the single executable

function loadFromSeaAsset(cacheDir: string): object {
  // getRawAsset gives the embedded bytes without a copy; they are read-only, we only read them.
  // They are touched only when the cache lacks them: every page read would stay in the RSS.
  const asset = () => Buffer.from(sea.getRawAsset(SQLITE_ADDON_ASSET));
  const sha256 = embeddedSha256() ?? createHash('sha256').update(asset()).digest('hex');
  const file = path.join(cacheDir, `better_sqlite3-${sha256.slice(0, 16)}.node`);

  try {
    prepareCacheDir(cacheDir);
    if (!hasContent(file, sha256)) writeAtomically(cacheDir, file, asset());
  } catch (err) {
    if (err instanceof NativeLoadError) throw err;
    throw new NativeLoadError(
      `cannot write the SQLite engine to the native cache folder ${cacheDir} (${errorText(err)}). ` +
        `The folder must be writable and allow executing files; choose another one with ` +
        `--native-cache-dir DIR or the environment variable BPLS_NATIVE_CACHE_DIR.`,
      cacheDir,
      { cause: err },
    );
  }

  const mod = { exports: {} as object };
  try {
    process.dlopen(mod, file, os.constants.dlopen.RTLD_NOW);
    loadedFile = file;
  } catch (err) {
    if (isNoExec(err)) {
      throw new NativeLoadError(
        `cannot load the SQLite engine from the native cache folder ${cacheDir}: the folder does ` +
          `not allow executing files (mounted noexec?). The native cache folder must allow ` +
          `executing files; choose another one with --native-cache-dir DIR or the environment ` +
          `variable BPLS_NATIVE_CACHE_DIR. (${errorText(err)})`,
        cacheDir,
        { cause: err },
      );
    }
    throw err;
  }
  return mod.exports;
}

function prepareCacheDir(cacheDir: string): void {
  makeDirs(cacheDir, 0o700);
  const st = fs.statSync(cacheDir);
  if (!st.isDirectory()) throw new Error('not a directory');
  // Whoever can write to this folder can swap the library we are about to execute.
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  if (uid !== undefined && st.uid !== uid) {
    throw new NativeLoadError(
      `the native cache folder ${cacheDir} belongs to another user (uid ${st.uid}); use a folder ` +
        `of your own, that allows executing files, with --native-cache-dir DIR or the environment ` +
        `variable BPLS_NATIVE_CACHE_DIR.`,
      cacheDir,
    );
  }
  if ((st.mode & 0o022) !== 0) fs.chmodSync(cacheDir, 0o700);
}

/** The addon's sha256 recorded by the build (undefined from an executable built before it was). */
function embeddedSha256(): string | undefined {
  try {
    const hex = Buffer.from(sea.getRawAsset(SQLITE_ADDON_SHA256_ASSET)).toString('latin1');
    return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined;
  } catch {
    return undefined;
  }
}

/** Is the cached file exactly the addon? Read and hashed on every start: the cache may be tampered with. */
function hasContent(file: string, sha256: string): boolean {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return false;
  }
  if (!st.isFile()) return false;
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex') === sha256;
}

function writeAtomically(dir: string, file: string, data: Buffer): void {
  const tmp = path.join(
    dir,
    `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`,
  );
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx', 0o700);
    let off = 0;
    while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  // Make the rename itself durable; not every file system lets a directory be fsynced.
  try {
    const dfd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch {
    /* best effort */
  }
}

function isNoExec(err: unknown): boolean {
  const text = errorText(err);
  return /failed to map segment|operation not permitted|permission denied|EACCES|EPERM/i.test(text);
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

// ---------------------------------------------------------------------------------------------
// Outside the single executable

// esbuild's CommonJS bundle sets __filename to the bundle (dist/cli.cjs); vitest and tsx give the
// .ts source, where better-sqlite3 is not inlined and finds its addon by itself.
function runningFromBundle(): boolean {
  return typeof __filename === 'string' && !/\.[cm]?tsx?$/.test(__filename);
}

function loadFromInstalledPackage(): object {
  const req = createRequire(__filename);
  const pkgDir = path.dirname(req.resolve('better-sqlite3/package.json'));
  // The same order as better-sqlite3's lib/binding.js: a local compile wins over the prebuilds.
  const candidates = [
    path.join(pkgDir, 'build', 'Release', 'better_sqlite3.node'),
    path.join(
      pkgDir,
      'prebuilds',
      `${isMusl() ? 'linuxmusl' : process.platform}-${process.arch}.node`,
    ),
  ];
  const file = candidates.find((f) => fs.existsSync(f)) ?? candidates[candidates.length - 1]!;
  const exports = req(file) as object;
  loadedFile = file;
  return exports;
}

function isMusl(): boolean {
  if (process.platform !== 'linux') return false;
  try {
    return /\/ld-musl-[^/\s]*\.so/.test(fs.readFileSync('/proc/self/maps', 'latin1'));
  } catch {
    return false;
  }
}
