import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fileError, withFile } from './file-errors.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'bpls-file-errors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The errno error Node throws for reading `file`. */
function readFailure(file: string): unknown {
  try {
    readFileSync(file);
  } catch (err) {
    return err;
  }
  throw new Error(`${file} was read`);
}

describe('fileError: a file that cannot be had, in words', () => {
  it.each([
    ['missing', path.join(dir, 'nope'), 'not_found', 'ENOENT, no such file or folder'],
    ['a folder', dir, 'invalid_request', 'EISDIR, it is a folder, not a file'],
  ])('%s', (_, file, code, said) => {
    const e = fileError(readFailure(file), { action: 'read', what: 'the key', file: 'k' })!;
    expect(e.code).toBe(code);
    expect(e.message).toBe(`cannot read the key k: ${said}`);
    expect(e.details).toEqual({ errno: (readFailure(file) as { code: string }).code, file: 'k' });
  });

  it('without a role, the path of the error; an error that is not errno is not ours to word', () => {
    const file = path.join(dir, 'gone');
    expect(fileError(readFailure(file), { action: 'use' })!.message).toBe(
      `cannot use ${file}: ENOENT, no such file or folder`,
    );
    expect(fileError(new Error('boom'), { action: 'use' })).toBeUndefined();
    expect(fileError({ code: 'SQLITE_BUSY' }, { action: 'use' })).toBeUndefined();
  });

  it('withFile passes a value through, and rethrows what is not errno as it is', () => {
    const file = path.join(dir, 'there');
    writeFileSync(file, 'x');
    expect(withFile({ action: 'read', what: 'f', file }, () => readFileSync(file, 'utf8'))).toBe(
      'x',
    );
    const bug = new TypeError('bug');
    expect(() =>
      withFile({ action: 'read', what: 'f', file }, () => {
        throw bug;
      }),
    ).toThrow(bug);
  });
});
