/**
 * initServer: makes a data directory a server (identity files, database, first admin token), or
 * finds one there already. The `init` command parses its options, calls this and prints.
 */
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { systemClock, type Clock } from './clock.ts';
import { AppError } from './errors.ts';
import {
  dataPaths,
  initState,
  writeFileAtomic,
  moveAside,
  newIdentity,
  tightenModes,
  writeIdentity,
  type ServerInfo,
} from './data-dir.ts';
import { createServices, openContext } from './context.ts';
import { openStore, type AnyStore } from './storage/store.ts';
import { openPgStore } from './storage/pg/store.ts';
import { redactUrl } from './storage/pg/driver.ts';
import type { Durability } from './storage/db.ts';
import { loadSqliteBinding } from './storage/native.ts';
import { lockDataDir } from './storage/data-dir-lock.ts';
import { pinAtInit } from './sync/trust.ts';
import { signingKeyFromPaserk, type SigningKey, type VerifyKey } from './tokens/keys.ts';
import { makeDirs } from './fs-dirs.ts';

export interface InitOptions {
  dataDir: string;
  /** PostgreSQL's connection string: the database is initialised there, the data directory gets the identity files. */
  database?: string | undefined;
  nativeCacheDir: string;
  durability: Durability;
  /** Vendor keys to pin (parsed and checked by the caller: sync/trust.ts parseVendorKeys). */
  vendorKeys: readonly VerifyKey[];
  /** Start over: move an existing server's files aside (renamed *.replaced-<time>) and make a new one. */
  force: boolean;
  /** Who runs it, for the audit log (`cli:<user>`). */
  actor: string;
  /** Lines about file modes that were tightened (or could not be), as they happen; the CLI prints them to stderr. */
  onNote: (line: string) => void;
  clock?: Clock;
}

export interface InitResult {
  /** False when the directory held a whole server already (then nothing was made, no token either). */
  created: boolean;
  info: Pick<ServerInfo, 'server_id' | 'public_key' | 'kid'>;
  /** The first admin token, shown once; null when nothing was created. */
  adminToken: string | null;
  /** Key ids of the vendor keys given. */
  vendorKids: string[];
  /** On a server found already, with vendor keys given: `pinned` now, or `unchanged` (the same set was pinned). */
  pinned?: 'pinned' | 'unchanged';
  /** The earlier server's files, kept aside by --force. */
  movedAside: string[];
}

/**
 * Idempotent: a directory that holds a whole server is checked (the full start-up check of
 * openContext, so "already initialised" is never said of a damaged one) and left as it is, except
 * that vendor keys given for the first time are pinned. An empty or missing directory gets a new
 * server, under the data directory's lock (two inits at once make one server; none while a server
 * runs): license.db first (the server id, the `server.init` audit row and the pinned vendor keys in
 * one transaction, then the first admin token), then server.key and server.json.
 *
 * @throws AppError `conflict` (a partly initialised directory without `force`; another init made
 *   the server meanwhile; a different vendor key set than the one pinned; the lock is held),
 *   the errors of openContext for a damaged server (`conflict`, `not_found`, `forbidden`,
 *   `storage_unavailable`), and storage failures (`storage_full`, `storage_unavailable`)
 */
export function initServer(o: InitOptions): InitResult {
  const clock = o.clock ?? systemClock;
  const vendorKids = o.vendorKeys.map((k) => k.kid);
  if (o.database !== undefined)
    return initPg(o as InitOptions & { database: string }, clock, vendorKids);
  const state = initState(o.dataDir);
  if (state === 'complete' && !o.force) return existing(o, clock, vendorKids);
  if (state === 'partial' && !o.force) {
    // Another init may be making it right now: then its lock says so (conflict, naming it). A
    // lock that cannot even be tried (a read-only folder) leaves the refusal below to speak.
    try {
      lockDataDir(o.dataDir, {
        role: 'init',
        nativeBinding: loadSqliteBinding(o.nativeCacheDir),
      }).release({ discard: true });
    } catch (err) {
      if (err instanceof AppError && err.code === 'conflict') throw err;
    }
    throw new AppError(
      'conflict',
      `${o.dataDir} is only partly initialised; refusing to overwrite it`,
      { data_dir: o.dataDir },
      'restore it from a backup, or run init --force (existing files are kept aside)',
    );
  }
  // While a server holds the directory its files must not be replaced under it; and no server
  // may start while they are.
  // A new directory too: two inits at once must not both create a server in it (the loser would
  // print an identity the directory does not keep).
  if (state === 'none') makeDirs(o.dataDir, 0o700);
  const lock = lockDataDir(o.dataDir, {
    role: 'init',
    nativeBinding: loadSqliteBinding(o.nativeCacheDir),
  });
  if (state === 'none' && initState(o.dataDir) !== 'none') {
    lock.release({ discard: true });
    throw new AppError(
      'conflict',
      `${o.dataDir} was initialised by another process meanwhile; nothing was created`,
      { data_dir: o.dataDir },
      `run init again to see that server (or init --force to replace it)`,
    );
  }
  try {
    const now = clock.now();
    // A folder made beforehand (mkdir: 0755) would leave the files listable and the database readable.
    if (existsSync(o.dataDir)) tightenModes(o.dataDir, { dir: true }).forEach(o.onNote);
    const movedAside =
      state === 'none'
        ? []
        : moveAside(o.dataDir, new Date(now).toISOString().replace(/[:.]/g, '-'));
    // The database first, whole (server id, init row, vendor keys, first token), then the identity
    // files, server.json last: until it is there another init sees a partly initialised directory
    // (and refuses), never a whole server whose database is still being made.
    const { info, key } = newIdentity(now);
    const store = openStore(dataPaths(o.dataDir).db, {
      durability: o.durability,
      nativeBinding: loadSqliteBinding(o.nativeCacheDir),
    });
    let adminToken: string;
    try {
      const services = createServices(store, clock, key, info);
      store.tx(() => recordInit(store, info, o, now));
      adminToken = services.apiTokens.create(
        { name: 'initial admin', role: 'admin' },
        o.actor,
      ).token;
    } finally {
      store.close();
    }
    writeIdentity(o.dataDir, { info, key });
    return { created: true, info, adminToken, vendorKids, movedAside };
  } finally {
    // A lock file init made is not left behind: the data directory holds its three files.
    lock.release({ discard: true });
  }
}

/** A whole server is there: check it, tighten its modes, pin vendor keys given for the first time. */
function existing(o: InitOptions, clock: Clock, vendorKids: string[]): InitResult {
  // The whole start-up check, not just the identity: "already initialised" must not be said of
  // a server whose database is empty or damaged.
  const checked = openContext({
    dataDir: o.dataDir,
    database: o.database,
    nativeCacheDir: o.nativeCacheDir,
    durability: o.durability,
  });
  tightenModes(o.dataDir, { dir: true }).forEach(o.onNote);
  let pinned: 'pinned' | 'unchanged' | undefined;
  try {
    // First pinning on a server made without --vendor-key; a different set is refused.
    if (o.vendorKeys.length > 0)
      pinned = checked.store.tx(() => pinAtInit(checked.store, o.vendorKeys, o.actor, clock.now()));
  } finally {
    checked.close();
  }
  return {
    created: false,
    info: checked.info,
    adminToken: null,
    vendorKids,
    ...(pinned ? { pinned } : {}),
    movedAside: [],
  };
}

/** The database's side of a new server, in the caller's transaction: its id, the init row, the vendor keys. */
function recordInit(store: AnyStore, info: ServerInfo, o: InitOptions, now: number): void {
  store.state.set('server_id', info.server_id);
  store.audit.append({
    at: now,
    actor: o.actor,
    action: 'server.init',
    targetType: 'server',
    targetId: info.server_id,
    details: { public_key: info.public_key, kid: info.kid },
  });
  if (o.vendorKeys.length > 0) pinAtInit(store, o.vendorKeys, o.actor, now);
}

/**
 * init on PostgreSQL: the database is initialised once, for one identity, by whichever init takes
 * the write lock first; every node then runs with a copy of that data directory. A data directory
 * holding an identity already is checked against the database (openContext) and left as it is.
 *
 * @throws AppError `conflict` (the database belongs to a server initialised elsewhere; --force,
 *   which has no meaning here), `storage_unavailable` (PostgreSQL unreachable)
 */
function initPg(
  o: InitOptions & { database: string },
  clock: Clock,
  vendorKids: string[],
): InitResult {
  if (o.force) {
    throw new AppError(
      'conflict',
      'init --force does not apply on PostgreSQL: the database is shared by every node',
      { database: redactUrl(o.database) },
      "to start over, drop and create the database with PostgreSQL's tools, then run init once",
    );
  }
  const p = dataPaths(o.dataDir);
  // server.json is written last, once the database names this server: until then it waits as
  // server.json.init, and an init interrupted before its commit is finished from it. A directory
  // with a whole identity is a node's copy: checked against the database, never used to
  // initialise another (a wrong --database would make a second pool of seats under one identity).
  const pending = `${p.info}.init`;
  if (existsSync(p.info)) return existing(o, clock, vendorKids);
  const resume = existsSync(p.key) && existsSync(pending);
  if (!resume && existsSync(p.key)) {
    throw new AppError(
      'conflict',
      `${o.dataDir} is only partly initialised (server.key without server.json); refusing to overwrite it`,
      { data_dir: o.dataDir },
      'restore it from a copy of the data directory, or give an empty --data-dir',
    );
  }
  const now = clock.now();
  let id: { info: ServerInfo; key: SigningKey };
  if (resume) {
    id = {
      info: JSON.parse(readFileSync(pending, 'utf8')) as ServerInfo,
      key: signingKeyFromPaserk(readFileSync(p.key, 'utf8').trim()),
    };
  } else {
    makeDirs(o.dataDir, 0o700);
    id = newIdentity(now);
    writeFileAtomic(p.key, `${id.key.secretPaserk()}\n`, 0o600);
    writeFileAtomic(pending, `${JSON.stringify(id.info, null, 2)}\n`, 0o600);
  }
  const forget = () => {
    if (!resume) for (const f of [p.key, pending]) rmSync(f, { force: true });
  };
  let adminToken: string | null = null;
  try {
    const store = openPgStore(o.database, { dataDir: o.dataDir });
    try {
      const services = createServices(store, clock, id.key, id.info);
      store.tx(() => {
        const recorded = store.state.get('server_id');
        if (recorded === id.info.server_id) return;
        if (recorded !== undefined) {
          throw new AppError(
            'conflict',
            `the PostgreSQL database ${store.file} was initialised already, by server ${recorded}; nothing was created`,
            { database: store.file, server_id: recorded },
            "copy that server's data directory (server.key, server.json) to this node and run serve with the same --database",
          );
        }
        recordInit(store, id.info, o, now);
        adminToken = services.apiTokens.create(
          { name: 'initial admin', role: 'admin' },
          o.actor,
        ).token;
      });
    } finally {
      store.close();
    }
  } catch (err) {
    forget();
    throw err;
  }
  renameSync(pending, p.info);
  // Recorded before by this identity (an init interrupted after its commit): checked as a node.
  if (adminToken === null) return existing(o, clock, vendorKids);
  return { created: true, info: id.info, adminToken, vendorKids, movedAside: [] };
}
