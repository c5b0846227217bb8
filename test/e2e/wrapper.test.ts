// bin/bp-license-server: the CLI from a checkout on the project's own Node 24, whatever `node` the
// shell finds first (the system's Node 20 here), from any folder and through a symlink.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, runProcess } from '../spawn.ts';

const WRAPPER = path.join(ROOT, 'bin', 'bp-license-server');
const work = mkdtempSync(path.join(tmpdir(), 'bpls-wrapper-'));
/** A PATH with only the system's folders: `node` there is not the project's (or is absent). */
const systemEnv = { PATH: '/usr/bin:/bin', HOME: work };

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('bin/bp-license-server', () => {
  it('runs the CLI on the project Node from another folder, with the system PATH, and through a symlink', async () => {
    const dir = path.join(work, 'data');
    const init = await runProcess(['/bin/sh', [WRAPPER]], ['init', '--data-dir', dir, '--json'], {
      cwd: work,
      env: systemEnv,
    });
    expect(init.code, init.stderr).toBe(0);
    expect(JSON.parse(init.stdout)).toMatchObject({ created: true });

    const link = path.join(work, 'bpls');
    symlinkSync(WRAPPER, link);
    const keys = await runProcess([link, []], ['keys', 'show', '--json'], {
      cwd: work,
      env: { ...systemEnv, BPLS_DATA_DIR: dir },
    });
    expect(keys.code, keys.stderr).toBe(0);
    expect(JSON.parse(keys.stdout).keys).toHaveLength(1);
  });

  it('says what to run when the checkout is not installed or not built', async () => {
    const bare = path.join(work, 'bare');
    mkdirSync(path.join(bare, 'bin'), { recursive: true });
    copyFileSync(WRAPPER, path.join(bare, 'bin', 'bp-license-server'));
    const r = await runProcess(
      ['/bin/sh', [path.join(bare, 'bin', 'bp-license-server')]],
      ['--version'],
      {
        cwd: work,
        env: systemEnv,
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: the project's Node 24 is missing .*; run: make install\n$/);
  });

  it('dist/cli.cjs under the system Node (not 24) refuses with what to run instead, exit 1, nothing written', async () => {
    // The system's node: npm ci runs on it before the project's Node 24 exists, so CI has it.
    const dir = path.join(work, 'never');
    const r = await runProcess(
      ['/usr/bin/node', [path.join(ROOT, 'dist', 'cli.cjs')]],
      ['init', '--data-dir', dir],
      { cwd: work, env: systemEnv },
    );
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      /^error: bp-license-server runs on Node 24; \/usr\/bin\/node is Node v\d+\.[\s\S]*\nhint: from a checkout run bin\/bp-license-server/,
    );
    expect(existsSync(dir)).toBe(false);
  });
});
