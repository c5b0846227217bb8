import { describe, expect, it } from 'vitest';
import { setImmediate as nextTurn } from 'node:timers/promises';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger, openLogFile } from './log.ts';

function capture(buffered: boolean) {
  const writes: string[] = [];
  const log = createLogger({
    write: (t) => writes.push(t),
    now: () => Date.UTC(2026, 10, 22),
    buffered,
    level: 'debug',
  });
  const lines = () =>
    writes
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { writes, log, lines };
}

describe('the logger', () => {
  it('writes one JSON object a line, each line at once when not buffered', () => {
    const { writes, log, lines } = capture(false);
    log.info('request', { status: 201 });
    log.debug('detail');
    expect(writes).toHaveLength(2);
    expect(lines()).toEqual([
      { ts: '2026-11-22T00:00:00.000Z', level: 'info', msg: 'request', status: 201 },
      { ts: '2026-11-22T00:00:00.000Z', level: 'debug', msg: 'detail' },
    ]);
  });

  it('buffered: the info lines of one turn go out in one write at the end of the turn', async () => {
    const { writes, log, lines } = capture(true);
    for (let i = 0; i < 3; i++) log.info('request', { i });
    expect(writes).toEqual([]);
    await nextTurn();
    expect(writes).toHaveLength(1);
    expect(lines().map((l) => l.i)).toEqual([0, 1, 2]);
  });

  it('buffered: a warning or an error goes out at once, after the lines queued before it', () => {
    const { writes, log, lines } = capture(true);
    log.info('first');
    log.error('broken', { error: 'x' });
    expect(writes).toHaveLength(1);
    expect(lines().map((l) => l.msg)).toEqual(['first', 'broken']);
  });

  it('buffered: flush() writes what is queued; a large queue goes out without waiting', () => {
    const { writes, log, lines } = capture(true);
    log.info('queued');
    log.flush();
    expect(lines().map((l) => l.msg)).toEqual(['queued']);
    log.info('big', { pad: 'x'.repeat(70 * 1024) });
    expect(writes).toHaveLength(2);
    log.flush();
    expect(writes).toHaveLength(2);
  });
});

describe('lines the writer refuses', () => {
  it('are counted, and the next line that goes out is preceded by one warning with the count', () => {
    const writes: string[] = [];
    let open = false;
    const log = createLogger({
      write: (t) => (open ? writes.push(t) > 0 : false),
      now: () => Date.UTC(2026, 10, 22),
    });
    log.info('lost 1');
    log.info('lost 2');
    log.warn('lost 3');
    expect(log.dropped()).toBe(3);
    expect(writes).toEqual([]);
    open = true;
    log.info('kept');
    log.info('kept too');
    const lines = writes
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toEqual([
      {
        ts: '2026-11-22T00:00:00.000Z',
        level: 'warn',
        msg: 'log lines dropped: the log reader was gone or too slow',
        count: 3,
        total: 3,
      },
      { ts: '2026-11-22T00:00:00.000Z', level: 'info', msg: 'kept' },
      { ts: '2026-11-22T00:00:00.000Z', level: 'info', msg: 'kept too' },
    ]);
    expect(log.dropped()).toBe(3);
  });

  it('buffered: a refused batch counts each of its lines, and the warning is not counted as one', async () => {
    let open = false;
    const writes: string[] = [];
    const log = createLogger({ write: (t) => (open ? writes.push(t) > 0 : false), buffered: true });
    for (let i = 0; i < 5; i++) log.info('request', { i });
    await nextTurn();
    expect(log.dropped()).toBe(5);
    log.info('again');
    await nextTurn();
    expect(log.dropped()).toBe(6);
    open = true;
    log.info('back');
    await nextTurn();
    const lines = writes
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; count?: number });
    expect(lines.map((l) => [l.msg, l.count])).toEqual([
      ['log lines dropped: the log reader was gone or too slow', 6],
      ['back', undefined],
    ]);
  });
});

describe('the log file', () => {
  it('is created 0600, appended to, and reopened at its path after a rename (logrotate)', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bpls-logfile-'));
    try {
      const file = path.join(dir, 'server.log');
      writeFileSync(file, 'earlier\n', { mode: 0o600 });
      const f = openLogFile(file);
      expect(f.write('one\n')).toBe(true);
      renameSync(file, `${file}.1`);
      expect(f.write('two\n')).toBe(true);
      f.reopen();
      expect(f.write('three\n')).toBe(true);
      f.close();
      expect(f.write('after close\n')).toBe(false);
      expect(readFileSync(`${file}.1`, 'utf8')).toBe('earlier\none\ntwo\n');
      expect(readFileSync(file, 'utf8')).toBe('three\n');
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const fresh = openLogFile(path.join(dir, 'new.log'));
      fresh.close();
      expect(statSync(path.join(dir, 'new.log')).mode & 0o777).toBe(0o600);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a failing write (a full disk) returns false instead of throwing', () => {
    const f = openLogFile('/dev/full');
    expect(f.write('x\n')).toBe(false);
    f.close();
  });

  it('a reopen that fails keeps the file that is open and throws', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bpls-logfile-'));
    try {
      const sub = path.join(dir, 'logs');
      mkdirSync(sub);
      const file = path.join(sub, 'server.log');
      const f = openLogFile(file);
      renameSync(sub, path.join(dir, 'moved'));
      expect(() => f.reopen()).toThrow(/ENOENT/);
      expect(f.write('still here\n')).toBe(true);
      f.close();
      expect(readFileSync(path.join(dir, 'moved', 'server.log'), 'utf8')).toBe('still here\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
