// The real CLI opening a data directory left by the previous release (schema 6) whose seats hold
// duplicate subjects: the first command migrates it and says so on stderr, keeping --json clean.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, killStrays, runProcess } from '../spawn.ts';
import { createIdentity, dataPaths } from '../../src/data-dir.ts';
import { buildV6Database, V6_NOW } from '../subjects-v6.ts';

let root: string;
let dataDir: string;
const cli = (args: string[]) => runProcess(CLI, [...args, '--data-dir', dataDir], { cwd: root });

beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), 'bpls-subjects-'));
  dataDir = path.join(root, 'data');
  createIdentity(dataDir, V6_NOW);
  buildV6Database(dataPaths(dataDir).db);
});
afterAll(() => {
  killStrays();
  rmSync(root, { recursive: true, force: true });
});

describe('upgrading a database with duplicate subjects', () => {
  it('the first command migrates and notes the merge on stderr; later ones say nothing; one subject keeps one seat', async () => {
    const first = await cli(['seats', 'list', 'ent_u', '--json']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(
      /^note: subject ids that differ only in case or Unicode form are now one subject: 4 seats of 3 subjects merged .*; audit row 2 lists them\n$/,
    );
    const listed = JSON.parse(first.stdout) as {
      data: Array<{ seat_id: string; subject_id: string }>;
    };
    expect(listed.data.map((s) => s.seat_id).sort()).toEqual(['seat_u2', 'seat_u5', 'seat_u6']);

    const second = await cli(['seats', 'list', 'ent_u']);
    expect(second.code).toBe(0);
    expect(second.stderr).toBe('');

    const dup = await cli(['seats', 'assign', 'ent_u', 'ALICE', '--json']);
    expect(dup.code).toBe(1);
    expect(JSON.parse(dup.stdout).error).toMatchObject({
      code: 'conflict',
      details: {
        errors: [{ index: 0, subject: 'user:ALICE', message: 'holds a seat already as Alice' }],
      },
    });
  });
});
