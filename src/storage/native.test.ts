import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { defaultNativeCacheDir, loadSqliteBinding, NativeLoadError } from './native.ts';

describe('loadSqliteBinding', () => {
  test('outside the single executable, from the sources, lets better-sqlite3 find its own addon', async () => {
    expect(loadSqliteBinding('/nonexistent/never-created')).toBeUndefined();
    expect(fs.existsSync('/nonexistent/never-created')).toBe(false);
    // And better-sqlite3 does find it.
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(':memory:');
    expect(db.prepare('select sqlite_version() as v').get()).toMatchObject({
      v: expect.stringMatching(/^3\./),
    });
    db.close();
  });

  test('NativeLoadError keeps the folder', () => {
    const err = new NativeLoadError('x', '/some/dir');
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('NativeLoadError');
    expect(err.cacheDir).toBe('/some/dir');
  });
});

describe('defaultNativeCacheDir', () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'bpls-home-'));
  afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

  test('XDG_CACHE_HOME wins', () => {
    expect(defaultNativeCacheDir({ XDG_CACHE_HOME: '/x/cache', HOME: home }, '/data')).toBe(
      '/x/cache/bp-license-server',
    );
  });

  test('a relative or empty XDG_CACHE_HOME is ignored, as the XDG spec says', () => {
    const expected = path.join(home, '.cache', 'bp-license-server');
    expect(defaultNativeCacheDir({ XDG_CACHE_HOME: 'rel/cache', HOME: home }, '/data')).toBe(
      expected,
    );
    expect(defaultNativeCacheDir({ XDG_CACHE_HOME: '', HOME: home }, '/data')).toBe(expected);
  });

  test('else ~/.cache', () => {
    expect(defaultNativeCacheDir({ HOME: home }, '/data')).toBe(
      path.join(home, '.cache', 'bp-license-server'),
    );
  });

  test('an unusable home ("/", "", relative, missing) sends it to the data folder', () => {
    for (const HOME of ['/', '', 'relative/home', path.join(home, 'missing')]) {
      expect(defaultNativeCacheDir({ HOME }, '/data')).toBe(path.join('/data', '.native-cache'));
    }
    expect(defaultNativeCacheDir({ HOME: '/' }, './data')).toBe(path.join('data', '.native-cache'));
  });

  test('without HOME in the environment, the system home is asked', () => {
    const sys = os.homedir();
    const usable = sys !== '' && sys !== '/' && fs.existsSync(sys);
    expect(defaultNativeCacheDir({}, '/data')).toBe(
      usable ? path.join(sys, '.cache', 'bp-license-server') : path.join('/data', '.native-cache'),
    );
  });
});
