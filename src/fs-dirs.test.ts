import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeDirs } from './fs-dirs.ts';

const root = mkdtempSync(path.join(tmpdir(), 'bpls-dirs-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('makeDirs', () => {
  it('makes a folder and its missing parents with the mode asked, and accepts one that exists', () => {
    const dir = path.join(root, 'a', 'b', 'c');
    makeDirs(dir, 0o700);
    expect(statSync(dir).isDirectory()).toBe(true);
    expect(statSync(path.join(root, 'a')).mode & 0o777).toBe(0o700);
    makeDirs(dir, 0o700);
  });

  it('refuses at once where Node’s recursive mkdir loops forever (/proc), and under a file', () => {
    expect(() => makeDirs('/proc/bpls-no-such/x')).toThrow(
      expect.objectContaining({ code: 'ENOENT', path: '/proc/bpls-no-such/x', syscall: 'mkdir' }),
    );
    const file = path.join(root, 'plain');
    writeFileSync(file, '');
    expect(() => makeDirs(path.join(file, 'sub'))).toThrow(
      expect.objectContaining({ code: 'ENOTDIR' }),
    );
  });
});
