import {
  accessSync,
  chmodSync,
  constants as fsConstants,
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
  openSync,
  fsyncSync,
  closeSync,
} from 'node:fs';
import { dirname, isAbsolute, join, relative, basename } from 'node:path';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { AppError } from './errors.ts';
import { newId } from './ids.ts';
import { generateSigningKey, signingKeyFromPaserk, type SigningKey } from './tokens/keys.ts';
import { makeDirs } from './fs-dirs.ts';

/** The files of a data directory: license.db (+ WAL), server.key (0600), server.json. Nothing else. */
export function dataPaths(dataDir: string) {
  return {
    dir: dataDir,
    db: join(dataDir, 'license.db'),
    key: join(dataDir, 'server.key'),
    info: join(dataDir, 'server.json'),
  };
}

export interface ServerInfo {
  format: 1;
  server_id: string;
  public_key: string;
  kid: string;
  created_at: string;
}

/** Writes a file so that a crash leaves the old file or the new one, never half of one. */
export function writeFileAtomic(file: string, data: string, mode: number): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode, flag: 'w' });
  const fd = openSync(tmp, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, mode);
  renameSync(tmp, file);
}

export type InitState = 'none' | 'complete' | 'partial';

export function initState(dataDir: string): InitState {
  const p = dataPaths(dataDir);
  const present = [p.db, p.key, p.info].filter((f) => existsSync(f)).length;
  if (present === 0) return 'none';
  return present === 3 ? 'complete' : 'partial';
}

/** A server identity: its signing key and what server.json says of it. */
export interface Identity {
  info: ServerInfo;
  key: SigningKey;
}

/** A new server identity in memory: a fresh Ed25519 key and a new server id. Writes nothing. */
export function newIdentity(now: number): Identity {
  const key = generateSigningKey();
  const info: ServerInfo = {
    format: 1,
    server_id: newId('srv'),
    public_key: key.publicPaserk,
    kid: key.kid,
    created_at: new Date(now).toISOString(),
  };
  return { info, key };
}

/**
 * Writes server.key (PASERK k4.secret) and then server.json, each 0600 and atomically. server.json
 * comes last: with it the directory holds all three files (initState `complete`), so init writes
 * the identity after the database is made.
 */
export function writeIdentity(dataDir: string, id: Identity): void {
  const p = dataPaths(dataDir);
  makeDirs(dataDir, 0o700);
  writeFileAtomic(p.key, `${id.key.secretPaserk()}\n`, 0o600);
  writeFileAtomic(p.info, `${JSON.stringify(id.info, null, 2)}\n`, 0o600);
}

/** Creates the server identity: a fresh Ed25519 key (PASERK k4.secret, 0600) and server.json. */
export function createIdentity(dataDir: string, now: number): Identity {
  const id = newIdentity(now);
  writeIdentity(dataDir, id);
  return id;
}

/** Moves an earlier server's files aside (init --force): nothing is deleted. */
export function moveAside(dataDir: string, stamp: string): string[] {
  const p = dataPaths(dataDir);
  const moved: string[] = [];
  for (const f of [p.db, `${p.db}-wal`, `${p.db}-shm`, p.key, p.info]) {
    if (existsSync(f)) {
      const to = `${f}.replaced-${stamp}`;
      renameSync(f, to);
      moved.push(to);
    }
  }
  return moved;
}

/** server.json, format 1: every field required, nothing else (a field we do not know was not written by us). */
const serverInfoSchema = z.strictObject({
  format: z.literal(1, { message: 'must be 1' }),
  // newId('srv'): 16 random bytes in base64url.
  server_id: z
    .string({ message: 'must be a string' })
    .regex(/^srv_[A-Za-z0-9_-]{22}$/, 'must look like srv_ and 22 base64url characters'),
  public_key: z
    .string({ message: 'must be a string' })
    .startsWith('k4.public.', 'must be a k4.public PASERK'),
  kid: z.string({ message: 'must be a string' }).startsWith('k4.pid.', 'must be a k4.pid key id'),
  created_at: z.iso.datetime({
    message: 'must be an RFC 3339 time such as 2024-01-15T10:30:00.000Z',
  }),
});

const RESTORE_HINT =
  'restore server.key and server.json together from a backup of this server (bp-license-server backup); never edit them by hand';

/** server.key and server.json are well under 1 KiB; anything past this is not ours. */
const IDENTITY_MAX_BYTES = 64 * 1024;

/**
 * Throws `fail(message)` unless `file` (symlinks followed) is a regular file of at most `maxBytes`
 * (undefined: any size). What opening and reading anything else would do: block on a FIFO, read a
 * device without end, or fail with a raw errno.
 */
export function assertRegularFile(
  file: string,
  maxBytes: number | undefined,
  fail: (message: string) => Error,
): void {
  let st;
  try {
    st = statSync(file);
  } catch (err) {
    throw fail(`${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (!st.isFile()) {
    const kind = st.isDirectory()
      ? 'a directory'
      : st.isFIFO()
        ? 'a named pipe (FIFO)'
        : st.isCharacterDevice() || st.isBlockDevice()
          ? 'a device'
          : st.isSocket()
            ? 'a socket'
            : 'not a regular file';
    throw fail(`${file} is ${kind}, not a regular file`);
  }
  if (maxBytes !== undefined && st.size > maxBytes)
    throw fail(`${file} is ${st.size} bytes, far larger than such a file can be`);
}

function identityError(
  dataDir: string,
  message: string,
  details: Record<string, unknown> = {},
): AppError {
  return new AppError(
    'conflict',
    `the server identity in ${dataDir} is inconsistent: ${message}; refusing to start`,
    { data_dir: dataDir, check: 'identity', ...details },
    RESTORE_HINT,
  );
}

/** How many directories nearbyServers names at most: enough for a choice, short enough to read. */
const NEARBY_MAX = 3;

/**
 * Initialised data directories next to `dataDir` (its siblings) and inside it (its children),
 * alphabetically, at most NEARBY_MAX: what someone who named a directory holding no server most
 * likely meant (`./data` on a checkout whose demo runs on `./demo-data`, or a typo). Only a
 * directory holding all three files counts. Unreadable directories count as empty: this only
 * feeds a hint, so it never throws.
 */
export function nearbyServers(dataDir: string): string[] {
  const found: string[] = [];
  for (const dir of [dataDir, dirname(dataDir)]) {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      continue;
    }
    for (const name of names) {
      const candidate = join(dir, name);
      if (candidate === dataDir || found.includes(candidate)) continue;
      if (initState(candidate) === 'complete') found.push(candidate);
      if (found.length === NEARBY_MAX) return found;
    }
  }
  return found;
}

/** `file` as a person would type it here: relative to the working directory when under it. */
function shownPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file;
}

/**
 * Loads and checks the server identity (docs/design.md "Process, files and resources": the server refuses
 * to start rather than serve wrongly): the three files are there, server.key is 0600, parses as a
 * k4.secret whose public half is the seed's and not a small-order point, and server.json has
 * exactly the format-1 fields with `public_key` equal to the key's and `kid` recomputed from it.
 * Everything is read and nothing is written, so a refusal changes nothing.
 *
 * @throws AppError `not_found` (no server), `conflict` (partial or inconsistent, details.check =
 *   "identity"), `forbidden` (server.key readable by others)
 */
export function loadIdentity(
  dataDir: string,
  o: { withDatabase?: boolean } = {},
): { info: ServerInfo; key: SigningKey } {
  const p = dataPaths(dataDir);
  // On PostgreSQL (withDatabase false) the directory holds the identity files only.
  const files = o.withDatabase === false ? [p.key, p.info] : [p.db, p.key, p.info];
  const present = files.filter((f) => existsSync(f)).length;
  const state = present === 0 ? 'none' : present === files.length ? 'complete' : 'partial';
  if (state === 'none' && o.withDatabase === false) {
    throw new AppError(
      'not_found',
      `${dataDir} holds no server identity (server.key, server.json)`,
      { data_dir: dataDir },
      'on PostgreSQL every node runs with a copy of the data directory made by the one init --database: copy it here (mode 0700, files 0600), or give --data-dir where it is',
    );
  }
  if (state === 'none') {
    const nearby = nearbyServers(dataDir).map(shownPath);
    const init = `bp-license-server init --data-dir ${shownPath(dataDir)}`;
    throw new AppError(
      'not_found',
      `${dataDir} holds no license server`,
      { data_dir: dataDir, nearby },
      nearby.length > 0
        ? `did you mean --data-dir ${nearby[0]} (export BPLS_DATA_DIR=${nearby[0]})?` +
            (nearby.length > 1 ? ` Other servers nearby: ${nearby.slice(1).join(', ')}.` : '') +
            ` Only to make a NEW, empty server there instead, run: ${init}`
        : `run: ${init} (this makes a NEW, empty server; a server made elsewhere is reached with --data-dir or BPLS_DATA_DIR)`,
    );
  }
  if (state === 'partial') {
    const missing = files.filter((f) => !existsSync(f));
    throw new AppError(
      'conflict',
      `${dataDir} is only partly initialised (${files.map((f) => basename(f)).join(', ')} must all be there; missing: ${missing.join(', ')}); refusing to start, and nothing is re-created`,
      { data_dir: dataDir, check: 'files', missing },
      'restore the missing files from a backup of this server, or run init --force to start over (existing files are kept aside)',
    );
  }
  // Regular files of a sane size before anything reads them: a FIFO would block the read forever,
  // a device (a link to /dev/zero) would be read without end, a directory gives a misleading error.
  for (const f of [p.key, p.info])
    assertRegularFile(f, IDENTITY_MAX_BYTES, (m) => identityError(dataDir, m, { file: f }));
  const mode = statSync(p.key).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new AppError(
      'forbidden',
      `${p.key} is readable by other users (mode ${mode.toString(8)}); it must be 0600`,
      {},
      `chmod 600 ${p.key}`,
    );
  }
  let key: SigningKey;
  try {
    key = signingKeyFromPaserk(readFileSync(p.key, 'utf8').trim());
  } catch (err) {
    throw identityError(
      dataDir,
      `server.key is not a usable k4.secret key (${(err as Error).message})`,
      { file: p.key },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(p.info, 'utf8'));
  } catch (err) {
    throw identityError(dataDir, `server.json is not JSON (${(err as Error).message})`, {
      file: p.info,
    });
  }
  const parsed = serverInfoSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({
      path: i.path.join('.') || '(root)',
      message: i.code === 'unrecognized_keys' ? `unknown field(s) ${i.keys.join(', ')}` : i.message,
    }));
    throw identityError(
      dataDir,
      `server.json ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`,
      { file: p.info, issues },
    );
  }
  const info = parsed.data as ServerInfo;
  if (info.public_key !== key.publicPaserk) {
    throw identityError(dataDir, 'server.key does not match the public key in server.json', {
      file: p.info,
      field: 'public_key',
    });
  }
  // The kid is what clients look keys up by; one that is not the key's own (key.kid is computed
  // from the key, never read) would be published.
  if (info.kid !== key.kid) {
    throw identityError(
      dataDir,
      `server.json kid ${info.kid.slice(0, 24)}… is not the key id of its public_key (${key.kid})`,
      { file: p.info, field: 'kid' },
    );
  }
  return { info, key };
}

/**
 * Refuses a data directory on a read-only file system before anything opens the database (SQLite
 * would otherwise fail later, half-way through opening or at the first write).
 *
 * @throws AppError `storage_unavailable`
 */
export function assertWritable(dataDir: string): void {
  for (const f of [dataDir, dataPaths(dataDir).db]) {
    try {
      accessSync(f, fsConstants.W_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') continue;
      const why =
        code === 'EROFS'
          ? 'is on a read-only file system'
          : `cannot be written (${code ?? String(err)})`;
      throw new AppError(
        'storage_unavailable',
        `${f} ${why}; the server needs to write license.db and its WAL, so it refuses to start`,
        { data_dir: dataDir, check: 'writable', errno: code },
        code === 'EROFS'
          ? 'remount the file system read-write (or copy the data directory to writable storage), then start again'
          : `give the user running the server write access to ${dataDir}`,
      );
    }
  }
}

/**
 * Makes the data directory 0700 and its files 0600 when they are not (an older version, or a
 * folder made by hand with 0755). Returns one line per change or per failure, for the caller to
 * print; never throws.
 */
export function tightenModes(dataDir: string, opts: { dir: boolean }): string[] {
  const p = dataPaths(dataDir);
  const notes: string[] = [];
  const targets: Array<[string, number]> = [
    [p.db, 0o600],
    [`${p.db}-wal`, 0o600],
    [`${p.db}-shm`, 0o600],
    [p.info, 0o600],
  ];
  if (opts.dir) targets.unshift([dataDir, 0o700]);
  for (const [f, want] of targets) {
    let mode: number;
    try {
      mode = statSync(f).mode & 0o777;
    } catch {
      continue;
    }
    if ((mode & 0o077) === 0) continue;
    try {
      chmodSync(f, want);
      notes.push(
        `tightened ${f} from ${mode.toString(8).padStart(4, '0')} to ${want.toString(8).padStart(4, '0')}`,
      );
    } catch (err) {
      notes.push(
        `warning: ${f} is readable by other users (mode ${mode.toString(8).padStart(4, '0')}) and could not be changed (${(err as NodeJS.ErrnoException).code ?? String(err)}); run: chmod ${want.toString(8)} ${f}`,
      );
    }
  }
  return notes;
}

/** The key for API-token hashes, derived from the server's secret key (never stored). */
export function tokenHashKey(key: SigningKey): Buffer {
  return createHash('sha256').update('bp.api-token-hash/1\n').update(key.secretPaserk()).digest();
}
