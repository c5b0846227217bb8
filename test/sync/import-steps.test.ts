// A big bundle is applied in short steps (see src/sync/import-steps.ts, applyInSteps): here every
// bundle is "big" (applyInOneMax: 0) and steps are a write or two, so the step machinery runs on
// small, readable bundles. Real SQLite, real signatures; only the clock is fake.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createWorld, ent, type Content, type World } from './world.ts';
import { AppError } from '../../src/errors.ts';
import { failInsertOf } from '../helpers.ts';

const worlds: World[] = [];
afterEach(() => {
  for (const w of worlds.splice(0)) w.h.close();
});
function world(): World {
  const w = createWorld();
  worlds.push(w);
  return w;
}

const STEPS = { applyInOneMax: 0, stepOps: 2 };

const importAudits = (w: World) =>
  w.h.store.audit
    .page(0, 1000)
    .filter((r) => r.action === 'sync.import')
    .map((r) => JSON.parse(r.details) as Record<string, unknown>);
const copiesLeft = (w: World) => {
  const dir = join(w.h.dir, 'sync-applying');
  return existsSync(dir) ? readdirSync(dir) : [];
};
const settingsOf = (w: World) => ({
  ttl: w.h.store.state.get('default_lease_ttl_seconds'),
  manual: w.h.store.state.get('allow_manual_provisioning'),
});

// Three snapshots: adds, a change with a higher rev, a revocation of a listed entitlement, ids
// never seen revoked, unlisted ones suspended and listed again, settings.
const SEQUENCE: Content[] = [
  {
    entitlements: [ent('ent_a'), ent('ent_b'), ent('ent_c'), ent('ent_d')],
    revoked: ['ent_x'],
    settings: { default_lease_ttl_seconds: 600 },
  },
  {
    entitlements: [
      ent('ent_a', { rev: 2, policy_json: { type: 'concurrent', max_seats: 9 } }),
      ent('ent_b'),
      ent('ent_e'),
    ],
    revoked: ['ent_b', 'ent_y'],
    settings: { allow_manual_provisioning: false },
  },
  {
    entitlements: [
      ent('ent_a', { rev: 2, policy_json: { type: 'concurrent', max_seats: 9 } }),
      ent('ent_b'),
      ent('ent_c'),
    ],
    settings: { default_lease_ttl_seconds: 900, allow_manual_provisioning: true },
  },
];

describe('a bundle applied in steps', () => {
  it('ends each import in the state one transaction gives, with the same result, one audit row, no marker and no copy left', async () => {
    const one = world();
    const steps = world();
    for (const [i, content] of SEQUENCE.entries()) {
      const r1 = await one.importFile(one.sign(i + 1, content));
      const r2 = await steps.importFile(steps.sign(i + 1, content), STEPS);
      expect({ ...r2, manifest_sha256: null }, `bundle ${i + 1}`).toEqual({
        ...r1,
        manifest_sha256: null,
      });
      expect(steps.bundleState(), `bundle ${i + 1}`).toEqual(one.bundleState());
      expect(settingsOf(steps)).toEqual(settingsOf(one));
      expect(steps.h.services.sync.status()).toMatchObject({
        last_import: { seq: i + 1 },
        applying: null,
        permanent_revocations: one.h.services.sync.status().permanent_revocations,
      });
      expect(
        importAudits(steps).map((a) => ({ ...a, manifest_sha256: null, kid: null, file: null })),
      ).toEqual(
        importAudits(one).map((a) => ({ ...a, manifest_sha256: null, kid: null, file: null })),
      );
      expect(copiesLeft(steps)).toEqual([]);
    }
    // Sanity: the sequence did what it says (so equality above is not two empty states).
    expect(
      Object.fromEntries(
        Object.entries(one.bundleState()).map(([id, e]) => [id, (e as { status: string }).status]),
      ),
    ).toEqual({
      ent_a: 'active',
      ent_b: 'revoked',
      ent_c: 'active',
      ent_d: 'suspended',
      ent_e: 'suspended',
    });
  });

  it('a refused bundle changes nothing and leaves no copy, as in one transaction', async () => {
    const w = world();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a', { rev: 3 })] }));
    await w.expectRefused(
      w.sign(2, { entitlements: [ent('ent_b'), ent('ent_a', { rev: 2 })] }),
      'rollback',
    );
    expect(copiesLeft(w)).toEqual([]);
  });
});

describe('an apply interrupted half-way', () => {
  /** Imports seq 2 in steps with a write failing half-way (a stand-in for a crash or a failing disk). */
  async function interrupted(w: World): Promise<string> {
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a'), ent('ent_b')] }));
    const file = w.sign(2, {
      entitlements: [
        ent('ent_a', { rev: 2, policy_json: { type: 'concurrent', max_seats: 9 } }),
        ent('ent_c'),
        ent('ent_d'),
        ent('ent_e'),
        ent('ent_f'),
      ],
    });
    const undo = failInsertOf(w.h.store, 'entitlements', 'ent_e', 'the disk failed');
    const err = await w.importFile(file, STEPS).then(
      () => undefined,
      (e: unknown) => e,
    );
    undo();
    expect(String(err)).toMatch(/the disk failed/);
    // Accepted (seq recorded, marker left), the first steps in, the rest not yet, no audit row yet.
    expect(w.h.services.sync.status()).toMatchObject({
      last_import: { seq: 2 },
      applying: { seq: 2 },
    });
    const state = w.bundleState();
    expect(state.ent_a).toMatchObject({ rev: 2 });
    expect(state.ent_c).toMatchObject({ status: 'active' });
    expect(state.ent_d).toBeUndefined();
    expect(state.ent_e).toBeUndefined();
    expect(state.ent_b).toMatchObject({ status: 'active' });
    expect(importAudits(w).map((a) => a.seq)).toEqual([1]);
    expect(copiesLeft(w)).toHaveLength(1);
    return file;
  }

  function expectFinished(w: World): void {
    const state = w.bundleState();
    expect(
      Object.fromEntries(
        Object.entries(state).map(([id, e]) => [id, (e as { status: string }).status]),
      ),
    ).toEqual({
      ent_a: 'active',
      ent_b: 'suspended',
      ent_c: 'active',
      ent_d: 'active',
      ent_e: 'active',
      ent_f: 'active',
    });
    expect(state.ent_a).toMatchObject({
      rev: 2,
      policy_json: JSON.stringify({ type: 'concurrent', max_seats: 9 }),
    });
    expect(w.h.services.sync.status()).toMatchObject({ last_import: { seq: 2 }, applying: null });
    const audits = importAudits(w);
    expect(audits.map((a) => a.seq)).toEqual([1, 2]);
    // The finishing pass wrote what was left: ent_d, ent_e and ent_f (the failed step took ent_d
    // back with it), and suspended ent_b.
    expect(audits[1]).toMatchObject({ resumed: true, added: 3, suspended: 1 });
    expect(copiesLeft(w)).toEqual([]);
  }

  it('is finished by importing the same bundle again, which answers "applied"', async () => {
    const w = world();
    const file = await interrupted(w);
    expect(await w.importFile(file)).toMatchObject({
      status: 'applied',
      seq: 2,
      added: 3,
      suspended: 1,
    });
    expectFinished(w);
    // And now it is the bundle imported last.
    expect(await w.importFile(file)).toMatchObject({ status: 'unchanged' });
  });

  it('is finished by `serve` at start (finishInterruptedImport), and a later bundle applies after it', async () => {
    const w = world();
    await interrupted(w);
    expect(await w.h.services.sync.finishInterruptedImport()).toBe(true);
    expectFinished(w);
    expect(await w.h.services.sync.finishInterruptedImport()).toBe(false);
    expect(
      await w.importFile(
        w.sign(3, {
          entitlements: [
            ent('ent_a', { rev: 2, policy_json: { type: 'concurrent', max_seats: 9 } }),
          ],
        }),
      ),
    ).toMatchObject({ status: 'applied', seq: 3, suspended: 4 });
  });

  it('is finished first when another bundle arrives', async () => {
    const w = world();
    await interrupted(w);
    expect(
      await w.importFile(w.sign(3, { entitlements: [ent('ent_a', { rev: 3 })] })),
    ).toMatchObject({ status: 'applied', seq: 3, changed: 1, suspended: 4 });
    expect(importAudits(w).map((a) => [a.seq, a.resumed ?? false])).toEqual([
      [1, false],
      [2, true],
      [3, false],
    ]);
    expect(w.h.services.sync.status()).toMatchObject({ last_import: { seq: 3 }, applying: null });
  });

  it('with its copy gone: another bundle is refused (conflict, nothing changed); the same bundle given again finishes it', async () => {
    const w = world();
    const file = await interrupted(w);
    rmSync(join(w.h.dir, 'sync-applying'), { recursive: true, force: true });
    const before = w.h.snapshot();
    const err = await w.importFile(w.sign(3, { entitlements: [ent('ent_a', { rev: 3 })] })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('conflict');
    expect((err as AppError).message).toMatch(/bundle seq 2 was being applied/);
    expect(w.h.snapshot()).toEqual(before);
    expect(await w.importFile(file)).toMatchObject({ status: 'applied', seq: 2 });
    expectFinished(w);
  });
});
