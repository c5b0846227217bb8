// Outbound sync against a small stand-in for the vendor's cloud on 127.0.0.1.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createWorld, ent, type World } from './world.ts';
import { startOutboundSync, parseSyncUrl, type OutboundSync } from '../../src/sync/outbound.ts';
import { verifyExport } from '../../src/sync/vendor.ts';
import { createLogger } from '../../src/log.ts';
import { standIn } from './stand-in.ts';

let w: World;
let sync: OutboundSync | undefined;
let vendorCloud: Awaited<ReturnType<typeof standIn>> | undefined;
afterEach(async () => {
  await sync?.stop();
  sync = undefined;
  await vendorCloud?.close();
  vendorCloud = undefined;
  w?.h.close();
});

function start(url: string) {
  const lines: Array<Record<string, unknown>> = [];
  const outbox = join(w.h.dir, 'sync', 'outbox');
  sync = startOutboundSync({
    url,
    serverId: w.h.info.server_id,
    service: w.h.services.sync,
    log: createLogger({ level: 'debug', write: (l) => lines.push(JSON.parse(l)) }),
    outbox,
    intervalMs: 3_600_000,
    firstRunMs: 3_600_000, // run by hand below
    timeoutMs: 5000,
  });
  return { lines, outbox, sent: () => readdirSync(join(outbox, 'sent')).sort() };
}

describe('outbound sync', () => {
  it('pulls the newest bundle with the import rules and pushes exports in order, keeping undelivered ones', async () => {
    w = createWorld();
    vendorCloud = await standIn();
    vendorCloud.bundles.set(1, readFileSync(w.sign(1, { entitlements: [ent('ent_a')] })));
    const s = start(vendorCloud.url);
    await sync!.runOnce();
    expect(Object.keys(w.bundleState())).toEqual(['ent_a']);
    expect(vendorCloud.requests[0]).toBe(`GET /v1/servers/${w.h.info.server_id}/bundles?after=0`);
    expect(vendorCloud.exports.map((e) => e.seq)).toEqual(['1']);
    const first = join(w.h.dir, 'got-1.bpsync');
    writeFileSync(first, vendorCloud.exports[0]!.body);
    expect(await verifyExport(first, w.h.info.public_key)).toMatchObject({
      seq: 1,
      ack: 1,
      enrolment: true,
    });
    expect(s.sent()).toEqual([`${w.h.info.server_id}-export-000001.bpsync`]);
    expect(s.lines.find((l) => l.msg === 'sync pull: bundle imported')).toMatchObject({
      seq: 1,
      added: 1,
    });

    // The vendor is down for a while: the export waits in the outbox.
    vendorCloud.failNextPushes(1);
    await sync!.runOnce();
    expect(readdirSync(s.outbox).filter((n) => n.endsWith('.bpsync'))).toEqual([
      `${w.h.info.server_id}-export-000002.bpsync`,
    ]);
    expect(s.lines.find((l) => l.level === 'warn')).toMatchObject({
      msg: 'sync push: the vendor did not take the export; it stays in the outbox',
      status: 503,
    });
    // The next run delivers both, oldest first; the bundle already applied is not fetched again.
    await sync!.runOnce();
    expect(vendorCloud.exports.map((e) => e.seq)).toEqual(['1', '2', '3']);
    expect(vendorCloud.requests.filter((r) => r.startsWith('GET')).at(-1)).toBe(
      `GET /v1/servers/${w.h.info.server_id}/bundles?after=1`,
    );
    const files = ['2', '3'].map((n) => {
      const f = join(w.h.dir, `got-${n}.bpsync`);
      writeFileSync(f, vendorCloud!.exports[Number(n) - 1]!.body);
      return f;
    });
    expect(await verifyExport(files[1]!, w.h.info.public_key, { prev: files[0]! })).toMatchObject({
      seq: 3,
    });
  });

  it('refuses a bad bundle from the vendor exactly as from a USB stick (audited, nothing changed) and still pushes', async () => {
    w = createWorld();
    vendorCloud = await standIn();
    vendorCloud.bundles.set(
      1,
      readFileSync(w.sign(1, { entitlements: [ent('ent_a')] }, { serverId: 'srv_other' })),
    );
    const s = start(vendorCloud.url);
    await sync!.runOnce();
    expect(w.bundleState()).toEqual({});
    expect(s.lines.find((l) => l.msg === 'sync pull: bundle rejected')).toMatchObject({
      rule: 'wrong_server',
    });
    const audit = w.h.store.audit.page(0, 100).map((a) => a.action);
    expect(audit).toContain('sync.import_rejected');
    expect(vendorCloud.exports).toHaveLength(1);
  });

  it('survives an unreachable vendor: logs, and tries again at the next run', async () => {
    w = createWorld();
    vendorCloud = await standIn();
    const url = vendorCloud.url;
    await vendorCloud.close();
    vendorCloud = undefined;
    const s = start(url);
    await sync!.runOnce();
    expect(s.lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([
      'sync pull failed; will try again at the next run',
      'sync push failed; will try again at the next run',
    ]);
    expect(readdirSync(s.outbox).filter((n) => n.endsWith('.bpsync'))).toHaveLength(1);
  });

  it('takes only plain http(s) URLs', () => {
    expect(parseSyncUrl('https://cloud.example.com/bp/')).toBe('https://cloud.example.com/bp');
    for (const bad of ['ftp://x', 'not a url', 'https://user:pw@x', 'https://x/?token=1'])
      expect(() => parseSyncUrl(bad), bad).toThrow(/--sync-url/);
  });
});
