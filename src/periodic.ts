/**
 * One way to run work on a schedule inside the server: the lease sweep, the sync inbox poll, the
 * outbound sync, the storage probe and the WAL watch all use it, so each gets the same guarantees
 * instead of its own hand-rolled timer loop.
 */

export interface PeriodicOptions {
  /** Milliseconds from the end of one run to the start of the next (a slow run never overlaps the next). */
  intervalMs: number;
  /** Milliseconds before the first timed run; intervalMs by default. */
  firstRunMs?: number;
  /**
   * The work. May be synchronous (it then runs to its end inside runNow()) or return a promise.
   * `signal` aborts when stop() is called: a long run checks it between steps and returns early.
   */
  run: (signal: AbortSignal) => void | Promise<void>;
  /** Told what a run threw or rejected with; the schedule goes on. Must not throw (if it does, that is swallowed). */
  onError: (err: unknown) => void;
}

export interface PeriodicTask {
  /**
   * Runs the work now, or joins the run in flight (never two at once). Resolves when that run is
   * done; never rejects (a failure goes to onError). After stop(), resolves at once without running.
   */
  runNow(): Promise<void>;
  /** No more runs: the timer is cleared and `signal` aborted; resolves once the run in flight is done. */
  stop(): Promise<void>;
}

/**
 * Starts a periodic task: the first timed run after `firstRunMs`, then one `intervalMs` after each
 * run ends. Timers are unref'd (a schedule never keeps the process alive) and nothing a run does
 * escapes as an unhandled error.
 */
export function startPeriodic(o: PeriodicOptions): PeriodicTask {
  const stopping = new AbortController();
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;

  const report = (err: unknown) => {
    try {
      o.onError(err);
    } catch {
      // A reporter that fails must not end the schedule, nor the process.
    }
  };

  function runNow(): Promise<void> {
    if (running) return running;
    if (stopping.signal.aborted) return Promise.resolve();
    let result: void | Promise<void>;
    try {
      result = o.run(stopping.signal);
    } catch (err) {
      report(err);
      return Promise.resolve();
    }
    if (!(result instanceof Promise)) return Promise.resolve();
    const mine = result.catch(report).finally(() => {
      if (running === mine) running = undefined;
    });
    running = mine;
    return mine;
  }

  function schedule(ms: number): void {
    if (stopping.signal.aborted) return;
    timer = setTimeout(() => {
      timer = undefined;
      void runNow().then(() => schedule(o.intervalMs));
    }, ms);
    timer.unref();
  }

  schedule(o.firstRunMs ?? o.intervalMs);
  return {
    runNow,
    async stop() {
      stopping.abort();
      if (timer) clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}
