import { AppError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import type { Store } from '../storage/store.ts';

/** How far the clock may read below the high-water mark before it is suspect. */
export const CLOCK_TOLERANCE_MS = 3_600_000;
// The mark is written to the database at most this often (it also rises in memory with every use).
const PERSIST_EVERY_MS = 60_000;
const HWM_KEY = 'time_hwm';

export interface TimeGuardDeps {
  store: Store;
  clock: Clock;
  /**
   * A monotonic clock in ms (performance.now in production). With it, a wall clock that steps back
   * while the server runs is caught even without traffic; tests leave it out.
   */
  monotonicMs?: (() => number) | undefined;
}

export interface TimeStatus {
  suspect: boolean;
  now: string;
  high_water_mark: string;
  tolerance_seconds: number;
}

/**
 * Expiry is only as good as the clock. The guard keeps a high-water mark of time, raised by use
 * and by vendor bundles' signed `iat`. A clock more than the tolerance below it refuses new leases
 * and renewals with `clock_suspect` until the clock is fixed or a newer vendor bundle vouches for
 * the time.
 */
export function createTimeGuard({ store, clock, monotonicMs }: TimeGuardDeps) {
  const stored = Number(store.state.get(HWM_KEY) ?? '0');
  let hwm = Number.isFinite(stored) ? stored : 0;
  let persisted = hwm;
  let suspect = false;
  let seenVersion = store.dataVersion();
  let seenVouch = lastVouch();
  const anchor = monotonicMs ? { wall: clock.now(), mono: monotonicMs() } : null;

  function lastVouch(): number {
    return store.state.lastClockEventSeq('vouched');
  }

  // A rolled-back transaction took our writes with it: what is stored is the truth again. A
  // suspect episode whose event was undone is recorded anew by the next assessment.
  store.onRollback(() => {
    const storedNow = Number(store.state.get(HWM_KEY) ?? '0');
    persisted = Number.isFinite(storedNow) ? storedNow : 0;
    suspect = store.state.lastClockEventSeq('suspect') > store.state.lastClockEventSeq('recovered');
  });

  /**
   * Another connection (the CLI, the folder watch) may have raised the mark or vouched for the
   * time since we last looked: adopt what it stored.
   */
  function refresh(): void {
    const v = store.dataVersion();
    if (v === seenVersion) return;
    seenVersion = v;
    const storedNow = Number(store.state.get(HWM_KEY) ?? '0');
    if (!Number.isFinite(storedNow)) return;
    const vouch = lastVouch();
    if (vouch !== seenVouch) {
      // A vendor-signed time replaced the mark: it may be lower than ours, and it wins.
      seenVouch = vouch;
      hwm = storedNow;
      persisted = storedNow;
      if (anchor && monotonicMs) {
        anchor.wall = storedNow;
        anchor.mono = monotonicMs();
      }
    } else if (storedNow > hwm) {
      hwm = storedNow;
      persisted = storedNow;
    }
  }

  /** The mark as far as this process knows: the stored one, or what the monotonic clock says since start. */
  function mark(): number {
    if (anchor && monotonicMs) return Math.max(hwm, anchor.wall + (monotonicMs() - anchor.mono));
    return hwm;
  }

  function persist(): void {
    if (hwm - persisted >= PERSIST_EVERY_MS || persisted === 0) {
      store.state.set(HWM_KEY, String(hwm));
      persisted = hwm;
    }
  }

  return {
    /**
     * Call inside a write transaction before a grant or renewal. Returns the refusal when the clock
     * is behind the mark (recording the first refusal of an episode), else raises the mark.
     */
    assess(now: number): AppError | null {
      refresh();
      const m = mark();
      if (now < m - CLOCK_TOLERANCE_MS) {
        if (!suspect) {
          suspect = true;
          const details = { now: new Date(now).toISOString(), high_water_mark: new Date(m).toISOString() };
          store.state.clockEvent(now, 'suspect', m, details);
          store.audit.append({ at: now, actor: 'system', action: 'clock.suspect', targetType: 'server', targetId: null, details });
        }
        return new AppError(
          'clock_suspect',
          `the system clock reads ${new Date(now).toISOString()}, more than an hour behind the last trusted time ${new Date(m).toISOString()}; leases are refused until the clock is fixed`,
          { now: new Date(now).toISOString(), high_water_mark: new Date(m).toISOString() },
          'fix the system clock (NTP), or import a newer vendor bundle to vouch for the time',
        );
      }
      if (suspect) {
        suspect = false;
        store.state.clockEvent(now, 'recovered', m, { now: new Date(now).toISOString() });
        store.audit.append({ at: now, actor: 'system', action: 'clock.recovered', targetType: 'server', targetId: null, details: { now: new Date(now).toISOString() } });
      }
      if (now > hwm) hwm = now;
      persist();
      return null;
    },

    /**
     * A vendor-signed time (a bundle's `iat`, already checked not to be ahead of our clock). It
     * raises the mark; while the clock is suspect it replaces the mark, since the vendor's signed
     * time outranks our own history (a clock once set far ahead must not lock the server forever).
     */
    vouch(iatMs: number): void {
      const now = clock.now();
      const m = mark();
      if (now < m - CLOCK_TOLERANCE_MS && iatMs <= now + CLOCK_TOLERANCE_MS) {
        hwm = iatMs;
        if (anchor) {
          anchor.wall = iatMs;
          anchor.mono = monotonicMs!();
        }
        store.state.clockEvent(now, 'vouched', iatMs, { iat: new Date(iatMs).toISOString(), previous_mark: new Date(m).toISOString() });
        seenVouch = lastVouch();
      } else if (iatMs > hwm) {
        hwm = iatMs;
      }
      store.state.set(HWM_KEY, String(hwm));
      persisted = hwm;
    },

    status(): TimeStatus {
      refresh();
      const now = clock.now();
      const m = mark();
      return { suspect: now < m - CLOCK_TOLERANCE_MS, now: new Date(now).toISOString(), high_water_mark: new Date(m).toISOString(), tolerance_seconds: CLOCK_TOLERANCE_MS / 1000 };
    },

    /** Clock events since a time, for exports and reports. */
    events(sinceMs = 0) {
      return store.state.clockEvents(sinceMs);
    },
  };
}

export type TimeGuard = ReturnType<typeof createTimeGuard>;
