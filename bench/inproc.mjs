// In-process measurements, run as a child of bench/run.mjs so they never share a process with the
// HTTP load. Prints one JSON object on stdout.
//
//   node bench/inproc.mjs ceiling '{"ms": 3000}'
//     sign_per_s, sqlite_commit_per_s, and the project's own grant and renew (services.leases.*)
//     with the server's durability (synchronous=FULL, WAL) in a temp dir on the same disk:
//     sequential (one await at a time) and 64 in flight (group commit applies, as in the server);
//     and parseStrictJson of a real lease token's claims (strict_json_parse_us, per token).
//   node bench/inproc.mjs populate '{"dataDir": "...", "entitlementId": "ent_...", "count": 100000}'
//     writes `count` active leases on one entitlement of a server's data directory (the server may
//     be running: SQLite's locking keeps both consistent), through the project's lease repository:
//     the same rows, counter and events a grant writes, without signing 100,000 tokens.
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { INPROC_BUNDLE } from './lib/build-inproc.mjs';
import { grantRequest, provisionItems } from './lib/shapes.mjs';

const P = await import(pathToFileURL(INPROC_BUNDLE).href);
const now = () => performance.now();
const CONCURRENCY = 64;

function signCeiling(ms) {
  const { privateKey } = generateKeyPairSync('ed25519');
  const msg = randomBytes(300);
  for (let i = 0; i < 200; i++) sign(null, msg, privateKey); // warm
  let n = 0;
  const t0 = now();
  const end = t0 + ms;
  while (now() < end) {
    for (let i = 0; i < 64; i++) sign(null, msg, privateKey);
    n += 64;
  }
  return n / ((now() - t0) / 1000);
}

/** The libuv pool's rate (what the server's async signing can reach on this machine), 64 in flight. */
async function signAsyncCeiling(ms) {
  const { privateKey } = generateKeyPairSync('ed25519');
  const msg = randomBytes(300);
  const one = () =>
    new Promise((res, rej) => sign(null, msg, privateKey, (e, s) => (e ? rej(e) : res(s))));
  return concurrent(one, ms);
}

function sqliteCommitCeiling(dir, ms) {
  const db = new Database(join(dir, 'commit.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
  const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
  const commit = db.transaction((v) => ins.run(v));
  const row = 'x'.repeat(200);
  for (let i = 0; i < 20; i++) commit.immediate(row);
  let n = 0;
  const t0 = now();
  const end = t0 + ms;
  while (now() < end) {
    commit.immediate(row);
    n++;
  }
  const rate = n / ((now() - t0) / 1000);
  db.close();
  return rate;
}

async function sequential(fn, ms) {
  let n = 0;
  const t0 = now();
  const end = t0 + ms;
  while (now() < end) {
    await fn();
    n++;
  }
  return n / ((now() - t0) / 1000);
}

async function concurrent(fn, ms, k = CONCURRENCY) {
  let n = 0;
  const t0 = now();
  const end = t0 + ms;
  const worker = async () => {
    while (now() < end) {
      await fn();
      n++;
    }
  };
  await Promise.all(Array.from({ length: k }, worker));
  return n / ((now() - t0) / 1000);
}

/**
 * Microseconds per parseStrictJson of a real lease token's claims (what every verification
 * parses): the claims are the token's payload less its 64-byte signature.
 */
function strictJsonFigure(token, ms) {
  const payload = Buffer.from(token.split('.')[2], 'base64url');
  const claims = payload.subarray(0, payload.length - 64).toString('utf8');
  for (let i = 0; i < 20_000; i++) P.parseStrictJson(claims); // warm up the JIT
  let n = 0;
  const t0 = now();
  const end = t0 + Math.min(ms, 2000);
  while (now() < end) {
    for (let i = 0; i < 1000; i++) P.parseStrictJson(claims);
    n += 1000;
  }
  return {
    strict_json_parse_us: ((now() - t0) * 1000) / n,
    strict_json_claims_bytes: claims.length,
  };
}

function openServices(dir) {
  const { info, key } = P.createIdentity(dir, Date.now());
  const store = P.openStore(P.dataPaths(dir).db, { durability: 'full' });
  const services = P.createServices(store, P.systemClock, key, info);
  return { store, services };
}

async function ceiling({ ms }) {
  const dir = mkdtempSync(join(tmpdir(), 'bpls-bench-inproc-'));
  try {
    const out = {};
    out.sign_per_s = signCeiling(ms);
    out.sign_async_64_per_s = await signAsyncCeiling(ms);
    out.sqlite_commit_per_s = sqliteCommitCeiling(dir, ms);

    const { store, services } = openServices(join(dir, 'data'));
    services.entitlements.importMany(P.parseImportItems(provisionItems()), 'bench');
    let n = 0;
    const grant = () => services.leases.grant(toDomain(grantRequest(n++, 'inproc')));
    await concurrent(grant, Math.min(500, ms / 4)); // warm
    out.grant_inproc_seq_per_s = await sequential(grant, ms);
    out.grant_inproc_64_per_s = await concurrent(grant, ms);
    Object.assign(out, strictJsonFigure((await grant()).token, ms));

    // Renew: existing leases, round robin (the ones just granted).
    const ids = store.db
      .prepare("SELECT id FROM leases WHERE state = 'active' ORDER BY seq DESC LIMIT 20000")
      .pluck()
      .all();
    let r = 0;
    const renew = () => services.leases.renew(ids[r++ % ids.length]);
    await concurrent(renew, Math.min(500, ms / 4));
    out.renew_inproc_seq_per_s = await sequential(renew, ms);
    out.renew_inproc_64_per_s = await concurrent(renew, ms);
    out.renew_lease_pool = ids.length;

    out.over_grants = store.db
      .prepare(
        "SELECT count(*) FROM entitlements e WHERE e.max_seats IS NOT NULL AND e.max_seats < (SELECT count(*) FROM leases l WHERE l.entitlement_id = e.id AND l.state = 'active')",
      )
      .pluck()
      .get();
    store.close();
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function toDomain(b) {
  return {
    productId: b.product_id,
    tenantId: b.tenant_id,
    subjectType: b.subject_type,
    subjectId: b.subject_id,
  };
}

function populate({ dataDir, entitlementId, count, ttlSeconds = 3600 }) {
  const store = P.openStore(P.dataPaths(dataDir).db, { durability: 'full', mustExist: true });
  const { leases } = store;
  const t0 = now();
  const BATCH = 5000; // short write transactions, so a running server is never locked out for long
  let done = 0;
  while (done < count) {
    const n = Math.min(BATCH, count - done);
    store.tx(() => {
      const at = Date.now();
      for (let i = 0; i < n; i++) {
        const id = P.newId('lease');
        const subjectId = `prefill-${done + i}`;
        const subjectKey = P.subjectKey(subjectId);
        leases.insert({
          id,
          entitlementId,
          subjectType: 'user',
          subjectId,
          subjectKey,
          features: [],
          grantedAt: at,
          renewedAt: at,
          expiresAt: at + ttlSeconds * 1000,
        });
        const active = leases.bumpActive(entitlementId, 1);
        leases.event({
          at,
          kind: 'grant',
          entitlementId,
          leaseId: id,
          subjectType: 'user',
          subjectKey,
          activeAfter: active,
        });
      }
    });
    done += n;
  }
  const active = leases.counters(entitlementId).activeLeases;
  store.close();
  return { inserted: done, active_after: active, seconds: (now() - t0) / 1000 };
}

const [mode, arg] = process.argv.slice(2);
const opts = JSON.parse(arg ?? '{}');
let result;
if (mode === 'ceiling') result = await ceiling(opts);
else if (mode === 'populate') result = populate(opts);
else {
  console.error(`usage: node bench/inproc.mjs ceiling|populate JSON (got ${mode})`);
  process.exit(2);
}
process.stdout.write(`${JSON.stringify(result)}\n`);
