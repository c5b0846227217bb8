// Crash safety of the real server: a grant answered 201 is on disk. The server is SIGKILLed while
// grants are in flight, restarted on the same data directory, and every lease it acknowledged
// must still be there and renewable. (Grants committed whose answers were lost in the kill may add
// leases; none acknowledged may be missing.)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, startServe, type ServeHandle } from '../spawn.ts';
import { createConcurrent, initDataDir, pool, stopAll } from './world.ts';

const MAX_SEATS = 1000;
const LOOPS = 16;
/** Kill once this many grants have been acknowledged... */
const KILL_AFTER_ACKS = 300;
/** ...or this long after the first acknowledgement, whichever comes first. */
const KILL_AFTER_MS = 1500;
/** Hard bounds so the storm always ends: total requests (well under MAX_SEATS) and wall time. */
const MAX_REQUESTS = 900;
const MAX_STORM_MS = 60_000;

let root: string;
let dataDir: string;
let adminToken: string;
let entitlementId: string;
const servers: ServeHandle[] = [];

const serve = async () => {
  const s = await startServe(CLI, ['--data-dir', dataDir, '--port', '0'], {
    cwd: root,
    timeoutMs: 60_000,
  });
  servers.push(s);
  return s;
};

async function post(url: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

async function get(url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { headers: { Authorization: `Bearer ${adminToken}` } });
  return { status: res.status, body: await res.json() };
}

const grantBody = (subjectId: string) => ({
  product_id: 'p',
  tenant_id: 't',
  subject_type: 'user',
  subject_id: subjectId,
});

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'bpls-crash-'));
  dataDir = path.join(root, 'data');
  adminToken = (await initDataDir(root, dataDir)).admin_token;
  entitlementId = await createConcurrent(root, dataDir, MAX_SEATS);
});

afterAll(async () => {
  await stopAll(servers);
  rmSync(root, { recursive: true, force: true });
});

describe('a SIGKILL during a storm of grants', () => {
  it('never loses a lease it acknowledged', { timeout: 240_000 }, async () => {
    // ---- The storm, and the kill in the middle of it.
    const first = await serve();
    const acked: string[] = [];
    const errorsBeforeKill: string[] = [];
    const unexpected: string[] = [];
    let issued = 0;
    let killed = false;
    let firstAckAt: number | undefined;
    const stormStarted = performance.now();

    const kill = () => {
      if (killed) return;
      killed = true;
      first.child.kill('SIGKILL');
    };
    // The time limit, counted from the first acknowledgement (a slow machine may take a while to warm up).
    const killTimer = setInterval(() => {
      if (firstAckAt !== undefined && performance.now() - firstAckAt >= KILL_AFTER_MS) kill();
      if (performance.now() - stormStarted >= MAX_STORM_MS) kill();
    }, 20);

    const loop = async () => {
      while (!killed && issued < MAX_REQUESTS) {
        const subject = `u${issued++}`;
        try {
          const r = await post(`${first.base}/v1/license/lease`, grantBody(subject));
          if (r.status === 201) {
            acked.push(r.body.lease_id);
            firstAckAt ??= performance.now();
            // Kill from inside a loop: the other loops have requests in flight right now.
            if (acked.length >= KILL_AFTER_ACKS) kill();
          } else if (!killed) {
            unexpected.push(`${subject}: ${r.status} ${JSON.stringify(r.body)}`);
          }
        } catch (err) {
          // After the kill, connections fail: expected. Before it, nothing should.
          if (!killed) errorsBeforeKill.push(`${subject}: ${String(err)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: LOOPS }, loop));
    // The loops may end on MAX_REQUESTS before the kill: kill anyway (the point is SIGKILL, not SIGTERM).
    kill();
    clearInterval(killTimer);
    const exit = await first.exited;
    expect(exit).toEqual({ code: null, signal: 'SIGKILL' });

    expect(errorsBeforeKill, 'fetch failed before the kill').toEqual([]);
    expect(unexpected, 'answers other than 201 before the kill').toEqual([]);
    expect(acked.length).toBeGreaterThan(0);
    expect(new Set(acked).size, 'lease ids are distinct').toBe(acked.length);
    for (const id of acked) expect(id).toMatch(/^lease_/);
    expect(issued).toBeLessThanOrEqual(MAX_REQUESTS);
    console.info(
      `crash test: ${acked.length} grants acknowledged, ${issued} sent, before the SIGKILL`,
    );

    // ---- Restart on the same data directory.
    const second = await serve();

    // Every acknowledged lease is still there: renewable, same id.
    const renewFailures: string[] = [];
    await pool(acked, LOOPS, async (id) => {
      const r = await post(`${second.base}/v1/license/lease/renew`, { lease_id: id });
      if (r.status !== 200 || r.body.lease_id !== id)
        renewFailures.push(`${id}: ${r.status} ${JSON.stringify(r.body)}`);
    });
    expect(renewFailures, 'acknowledged leases that did not survive the kill').toEqual([]);

    // The entitlement counts them all (and possibly grants committed whose answers were lost).
    const ent = await get(`${second.base}/v1/entitlements/${entitlementId}`);
    expect(ent.status).toBe(200);
    expect(ent.body.usage.active_leases).toBeGreaterThanOrEqual(acked.length);
    expect(ent.body.usage.active_leases).toBeLessThanOrEqual(issued);
    expect(ent.body.usage.active_leases).toBeLessThanOrEqual(MAX_SEATS);
    console.info(`crash test: ${ent.body.usage.active_leases} active leases after the restart`);

    // The admin lease list, paged, holds every acknowledged id; with a small page size too, to
    // walk the cursor across several pages.
    for (const limit of [500, 37]) {
      const seen = new Set<string>();
      let cursor: string | null = null;
      let pages = 0;
      do {
        const q: string = `entitlement_id=${entitlementId}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const page = await get(`${second.base}/v1/leases?${q}`);
        expect(page.status, JSON.stringify(page.body)).toBe(200);
        expect(page.body.data.length).toBeLessThanOrEqual(limit);
        for (const l of page.body.data) {
          expect(seen.has(l.lease_id), `lease ${l.lease_id} listed twice (limit ${limit})`).toBe(
            false,
          );
          expect(l).toMatchObject({
            entitlement_id: entitlementId,
            state: 'active',
            subject_type: 'user',
          });
          seen.add(l.lease_id);
        }
        cursor = page.body.next_cursor;
        expect(++pages, 'paging ends').toBeLessThanOrEqual(MAX_SEATS);
      } while (cursor !== null);
      const missing = acked.filter((id) => !seen.has(id));
      expect(missing, `acknowledged leases missing from the list (limit ${limit})`).toEqual([]);
      expect(seen.size).toBe(ent.body.usage.active_leases);
    }

    // A new subject still gets a lease after the restart, and the seats are still bounded.
    const fresh = await post(`${second.base}/v1/license/lease`, grantBody('after-restart'));
    expect(fresh.status, JSON.stringify(fresh.body)).toBe(201);
    expect(fresh.body.lease_id).toMatch(/^lease_/);
    expect(acked).not.toContain(fresh.body.lease_id);
    const after = await get(`${second.base}/v1/entitlements/${entitlementId}`);
    expect(after.status).toBe(200);
    expect(after.body.usage.active_leases).toBe(ent.body.usage.active_leases + 1);
    expect(after.body.usage.active_leases).toBeLessThanOrEqual(MAX_SEATS);
    expect(after.body.usage.max_seats).toBe(MAX_SEATS);

    expect(await second.stop(30_000)).toEqual({ code: 0, signal: null });
  });
});
