import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { startPeriodic, type PeriodicTask } from './periodic.ts';

let task: PeriodicTask | undefined;
afterEach(async () => {
  await task?.stop();
  task = undefined;
});

/** Resolves once cond() holds; fails the test after 5 s. */
async function until(what: string, cond: () => boolean): Promise<void> {
  for (const start = Date.now(); !cond(); await sleep(5))
    if (Date.now() - start > 5000) throw new Error(`timed out waiting for ${what}`);
}

describe('startPeriodic', () => {
  it('runs first after firstRunMs, then again after each run, never two at once', async () => {
    let runs = 0;
    let inFlight = 0;
    let most = 0;
    task = startPeriodic({
      intervalMs: 1,
      firstRunMs: 1,
      async run() {
        runs++;
        most = Math.max(most, ++inFlight);
        await sleep(20);
        inFlight--;
      },
      onError: (err) => {
        throw err;
      },
    });
    expect(runs).toBe(0);
    await until('three runs', () => runs >= 3);
    // runNow while a timed run is in flight joins it.
    await Promise.all([task.runNow(), task.runNow(), task.runNow()]);
    expect(most).toBe(1);
  });

  it('runs synchronous work to its end inside runNow, and joins an async run in flight', async () => {
    let n = 0;
    task = startPeriodic({ intervalMs: 3_600_000, run: () => void n++, onError: () => {} });
    void task.runNow();
    expect(n).toBe(1);

    let started = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = startPeriodic({
      intervalMs: 3_600_000,
      run: async () => {
        started++;
        await gate;
      },
      onError: () => {},
    });
    const a = slow.runNow();
    const b = slow.runNow();
    expect(a).toBe(b);
    expect(started).toBe(1);
    release();
    await a;
    await slow.runNow();
    expect(started).toBe(2);
    await slow.stop();
  });

  it('reports what a run throws or rejects with, and keeps its schedule', async () => {
    const errors: unknown[] = [];
    let runs = 0;
    task = startPeriodic({
      intervalMs: 1,
      firstRunMs: 1,
      run() {
        runs++;
        if (runs === 1) throw new Error('sync failure');
        if (runs === 2) return Promise.reject(new Error('async failure'));
      },
      onError: (err) => {
        errors.push(err);
        throw new Error('a failing reporter is swallowed too');
      },
    });
    await until('a third run after two failures', () => runs >= 3);
    expect(errors.map((e) => (e as Error).message)).toEqual(['sync failure', 'async failure']);
    await expect(task.runNow()).resolves.toBeUndefined();
  });

  it('stop() aborts the signal, waits for the run in flight, and nothing runs after it', async () => {
    let runs = 0;
    let sawAbort = false;
    let finished = false;
    task = startPeriodic({
      intervalMs: 1,
      firstRunMs: 1,
      async run(signal) {
        runs++;
        while (!signal.aborted) await sleep(2);
        sawAbort = true;
        await sleep(20);
        finished = true;
      },
      onError: () => {},
    });
    await until('the first run', () => runs === 1);
    await task.stop();
    expect(sawAbort).toBe(true);
    expect(finished).toBe(true);
    await task.runNow();
    await sleep(20);
    expect(runs).toBe(1);
  });

  it('never keeps the process alive: a process with only a scheduled task exits', () => {
    const module = fileURLToPath(new URL('./periodic.ts', import.meta.url));
    const r = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { startPeriodic } from ${JSON.stringify(module)};
         startPeriodic({ intervalMs: 3600000, firstRunMs: 3600000, run() {}, onError() {} });`,
      ],
      { timeout: 10_000, encoding: 'utf8' },
    );
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
  });
});
