import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { AppError } from './errors.ts';
import { newId } from './ids.ts';
import { generateSigningKey, signingKeyFromPaserk, type SigningKey } from './tokens/keys.ts';

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

/** Creates the server identity: a fresh Ed25519 key (PASERK k4.secret, 0600) and server.json. */
export function createIdentity(dataDir: string, now: number): { info: ServerInfo; key: SigningKey } {
  const p = dataPaths(dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const key = generateSigningKey();
  const info: ServerInfo = {
    format: 1,
    server_id: newId('srv'),
    public_key: key.publicPaserk,
    kid: key.kid,
    created_at: new Date(now).toISOString(),
  };
  writeFileAtomic(p.key, `${key.secretPaserk()}\n`, 0o600);
  writeFileAtomic(p.info, `${JSON.stringify(info, null, 2)}\n`, 0o644);
  return { info, key };
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

export function loadIdentity(dataDir: string): { info: ServerInfo; key: SigningKey } {
  const p = dataPaths(dataDir);
  const state = initState(dataDir);
  if (state === 'none') {
    throw new AppError('not_found', `${dataDir} holds no license server`, { data_dir: dataDir }, `run: bp-license-server init --data-dir ${dataDir}`);
  }
  if (state === 'partial') {
    throw new AppError('conflict', `${dataDir} is only partly initialised (license.db, server.key and server.json must all be there)`, { data_dir: dataDir }, 'restore it from a backup, or run init --force to start over');
  }
  const mode = statSync(p.key).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new AppError('forbidden', `${p.key} is readable by other users (mode ${mode.toString(8)}); it must be 0600`, {}, `chmod 600 ${p.key}`);
  }
  let info: ServerInfo;
  let key: SigningKey;
  try {
    info = JSON.parse(readFileSync(p.info, 'utf8')) as ServerInfo;
    key = signingKeyFromPaserk(readFileSync(p.key, 'utf8').trim());
  } catch (err) {
    throw new AppError('invalid_request', `cannot read the server identity in ${dataDir}: ${(err as Error).message}`);
  }
  if (info.public_key !== key.publicPaserk) {
    throw new AppError('conflict', `server.key does not match the public key in server.json in ${dataDir}`, {}, 'restore both files from the same backup');
  }
  return { info, key };
}

/** The key for API-token hashes, derived from the server's secret key (never stored). */
export function tokenHashKey(key: SigningKey): Buffer {
  return createHash('sha256').update('bp.api-token-hash/1\n').update(key.secretPaserk()).digest();
}
