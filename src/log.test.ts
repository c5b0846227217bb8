import { describe, expect, it } from 'vitest';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { createLogger } from './log.ts';

function capture(buffered: boolean) {
  const writes: string[] = [];
  const log = createLogger({ write: (t) => writes.push(t), now: () => Date.UTC(2026, 10, 22), buffered, level: 'debug' });
  const lines = () => writes.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
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
