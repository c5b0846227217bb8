import { AppError } from '../errors.ts';
import { toIso, type Clock } from '../clock.ts';
import type { Store } from './store.ts';

/** How far the clock may read below the high-water mark before it is suspect (docs/design.md "Time": 1 h). */
export const CLOCK_TOLERANCE_MS = 3_600_000;
// Use raises the mark in memory at every grant; the database gets it at most this often (a restart
// loses under a minute of it, far inside the tolerance), so the grant path pays no write for it.
const PERSIST_EVERY_MS = 60_000;
const HWM_KEY = 'time_hwm';
// The largest time a Date can show: a stored mark beyond it is damage, not time.
const MAX_TIME_MS = 8.64e15;

export interface TimeGuardDeps {
  store: Store;
  clock: Clock;
  /**
   * A monotonic clock in ms (performance.now in production; fractional). With it, the mark advances
   * while the server runs, so a wall clock stepping back is caught without traffic. Tests inject
   * their own or leave it out (the mark then moves only with use and vouches).
   */
  monotonicMs?: (() => number) | undefined;
}

export interface TimeStatus {
  /** The wall clock reads more than the tolerance below the mark. */
  suspect: boolean;
  /** The wall clock (ms). */
  now: number;
  /** The mark (ms, whole): the highest trusted time, frozen during an episode. */
  highWaterMark: number;
  toleranceMs: number;
}

/**
 * The clock guard (docs/design.md "Time"). It keeps a high-water mark of trusted time, persisted in
 * server_state: raised by use (grants and renewals) and by vendor bundles' signed `iat`, and, while
 * the process runs, advanced by the monotonic clock from the last persisted mark (never from the
 * wall time at start, so a clock that was wrong before anything was granted is no evidence).
 *
 * When the wall clock reads more than {@link CLOCK_TOLERANCE_MS} below the mark, an episode opens:
 * the mark freezes (so time can catch up with it), and one `suspect` clock event and one
 * `clock.suspect` audit row are written. It closes with one `recovered` event and one
 * `clock.recovered` row when the clock reads within the tolerance again (fixed, or caught up) or a
 * newer vendor bundle vouches for the time. The database is the truth about the episode: a restart,
 * another connection, or a rolled-back transaction never records it twice or loses its end.
 *
 * The guard itself refuses nothing and never throws for the clock: the lease service refuses
 * bundle-managed entitlements with {@link refusal} while {@link assess} says the clock is behind.
 */
export function createTimeGuard({ store, clock, monotonicMs }: TimeGuardDeps) {
  const mono = monotonicMs;
  /** The highest trusted time known (ms, integer); frozen while an episode is open. */
  let hwm = 0;
  /** What the database holds, as far as this connection knows. */
  let persisted = 0;
  /** Where the monotonic clock extends the mark from: a persisted mark (or a vouch, or a recovery). */
  let anchor: { wall: number; mono: number } | null = null;
  /** An episode is open: the seq of its `suspect` event, else 0. */
  let openSeq = 0;
  let seenVersion = 0;
  let seenVouch = 0;
  load();

  function storedMark(): number {
    const n = Math.floor(Number(store.state.get(HWM_KEY) ?? '0'));
    return Number.isFinite(n) && n > 0 && n <= MAX_TIME_MS ? n : 0;
  }

  /** The open episode, from the events: a `suspect` newer than the last `recovered`. */
  function openEpisode(): number {
    const s = store.state.lastClockEventSeq('suspect');
    return s > store.state.lastClockEventSeq('recovered') ? s : 0;
  }

  function load(): void {
    seenVersion = store.dataVersion();
    hwm = persisted = storedMark();
    anchor = mono ? { wall: hwm, mono: mono() } : null;
    openSeq = openEpisode();
    seenVouch = store.state.lastClockEventSeq('vouched');
  }

  // A rolled-back transaction took our writes with it: what is stored is the truth again (an episode
  // whose `suspect` was undone is recorded by the next assessment; one whose `recovered` was undone
  // is closed by it; a vouch that was undone no longer lowers the mark). Readings this process made
  // stay in memory: they were true whether or not their transaction committed.
  store.onRollback(() => {
    const stored = storedMark();
    persisted = stored;
    if (stored > hwm) hwm = stored;
    seenVouch = store.state.lastClockEventSeq('vouched');
    openSeq = openEpisode();
  });

  /**
   * Another connection (the CLI importing a bundle, a previous run) may have raised the mark,
   * vouched for the time or recorded an episode since we last looked: adopt what it stored.
   */
  function refresh(): void {
    const v = store.dataVersion();
    if (v === seenVersion) return;
    seenVersion = v;
    const stored = storedMark();
    const vouch = store.state.lastClockEventSeq('vouched');
    if (vouch !== seenVouch) {
      // A vendor-signed time replaced the mark: it may be lower than ours, and it wins.
      seenVouch = vouch;
      hwm = persisted = stored;
      if (mono) anchor = { wall: stored, mono: mono() };
    } else if (stored > hwm) {
      hwm = persisted = stored;
    } else if (stored > persisted) {
      persisted = stored;
    }
    openSeq = openEpisode();
  }

  /** The mark now: frozen during an episode, else extended by the monotonic clock from its anchor. */
  function mark(): number {
    if (openSeq !== 0 || !anchor || !mono) return hwm;
    // performance.now() is fractional; the mark is whole milliseconds (clock_events.hwm is INTEGER).
    return Math.max(hwm, Math.floor(anchor.wall + (mono() - anchor.mono)));
  }

  function writeMark(m: number): void {
    store.state.set(HWM_KEY, String(m));
    hwm = persisted = m;
    if (mono) anchor = { wall: m, mono: mono() };
  }

  /**
   * Opens or closes the episode as the clock now says, writing its event and audit row. Must run
   * inside a write transaction. Returns whether the clock is behind the mark.
   */
  function settle(now: number, endedBy: 'clock' | 'vouch'): boolean {
    const m = mark();
    const behind = now < m - CLOCK_TOLERANCE_MS;
    if (behind && openSeq === 0) {
      // Frozen at what it is now, and stored, so a restart inside the episode sees the same mark.
      if (m !== persisted) writeMark(m);
      const details = {
        now: toIso(now),
        high_water_mark: toIso(m),
        tolerance_seconds: CLOCK_TOLERANCE_MS / 1000,
      };
      openSeq = store.state.clockEvent(now, 'suspect', m, details);
      store.audit.append({
        at: now,
        actor: 'system',
        action: 'clock.suspect',
        targetType: 'server',
        targetId: null,
        details: { ...details, clock_event: openSeq },
      });
    } else if (!behind && openSeq !== 0) {
      const details = {
        now: toIso(now),
        high_water_mark: toIso(m),
        ended_by: endedBy,
        suspect_event: openSeq,
      };
      const seq = store.state.clockEvent(now, 'recovered', m, details);
      store.audit.append({
        at: now,
        actor: 'system',
        action: 'clock.recovered',
        targetType: 'server',
        targetId: null,
        details: { ...details, clock_event: seq },
      });
      openSeq = 0;
      // From here the mark moves on from this reading, which is within the tolerance of the frozen
      // mark: extending the frozen mark instead would keep a clock that caught up on the edge.
      if (mono) anchor = { wall: now, mono: mono() };
    }
    return behind;
  }

  function behindNow(now: number): boolean {
    return now < mark() - CLOCK_TOLERANCE_MS;
  }

  return {
    /**
     * Call inside the write transaction of a grant or renewal, with its `now` (ms). Records the
     * start or end of an episode when the clock crossed the tolerance; raises the mark when the
     * clock is not behind. Returns true while the clock is behind the mark: the caller then refuses
     * bundle-managed entitlements ({@link refusal}) and serves the rest. Never throws for the clock.
     */
    assess(nowMs: number): boolean {
      const now = Math.floor(nowMs);
      refresh();
      if (settle(now, 'clock')) return true;
      if (now > hwm) hwm = now;
      if (hwm - persisted >= PERSIST_EVERY_MS || persisted === 0) writeMark(mark());
      return false;
    },

    /**
     * The `clock_suspect` refusal (503) for a bundle-managed entitlement while the clock is behind;
     * `what` names what is refused (`leases`, `new installations`).
     */
    refusal(entitlementId: string, nowMs: number, what = 'leases'): AppError {
      const now = toIso(nowMs);
      const m = toIso(mark());
      return new AppError(
        'clock_suspect',
        `the system clock reads ${now}, more than an hour behind the last trusted time ${m}; ${what} on ${entitlementId}, which the vendor's bundle manages, are refused until the clock is fixed`,
        { now, high_water_mark: m, entitlement_id: entitlementId },
        'fix the system clock (NTP), or import a newer bundle from the vendor: its signed time vouches for the clock',
      );
    },

    /**
     * A vendor-signed time (a bundle's `iat`, ms, already checked to be at most 5 minutes ahead of
     * our clock). Call inside the import's transaction. It raises the mark; while the clock is
     * behind the mark it replaces the mark (the vendor's signed time outranks our own history: a
     * clock once set far ahead must not lock the vendor's entitlements until time catches up), and
     * the episode (recorded now if nothing had seen it yet) closes with `ended_by: "vouch"`.
     */
    vouch(iatMs: number, nowMs: number = clock.now()): void {
      const now = Math.floor(nowMs);
      const iat = Math.floor(iatMs);
      if (!(iat > 0 && iat <= MAX_TIME_MS)) return;
      refresh();
      // An episode the clock itself ended (or one nobody had seen yet) is settled first, so the
      // events say truly what ended it.
      if (!settle(now, 'clock')) {
        if (iat > mark()) writeMark(iat);
        return;
      }
      const previous = mark();
      // While the episode is open the mark is frozen at hwm: the vendor's time becomes that mark.
      writeMark(iat);
      seenVouch = store.state.clockEvent(now, 'vouched', iat, {
        iat: toIso(iat),
        previous_mark: toIso(previous),
        now: toIso(now),
      });
      settle(now, 'vouch');
    },

    /**
     * Records an episode's start or end that no request has seen (the clock stepped back, or was
     * fixed, while nobody asked for a lease). Writes only when the state changes; the server calls
     * it at start and on its sweep timer.
     */
    tick(): void {
      refresh();
      if (behindNow(clock.now()) === (openSeq !== 0)) return;
      store.tx(() => {
        refresh();
        settle(Math.floor(clock.now()), 'clock');
      });
    },

    /** Where the clock stands against the mark now. Throws nothing. */
    status(): TimeStatus {
      refresh();
      const now = clock.now();
      const m = mark();
      return {
        suspect: now < m - CLOCK_TOLERANCE_MS,
        now,
        highWaterMark: m,
        toleranceMs: CLOCK_TOLERANCE_MS,
      };
    },

    /** Whether anything is guarded: bundle-managed entitlements are the only ones a suspect clock refuses. */
    guardsAnything(): boolean {
      return store.state.hasBundleEntitlements();
    },

    /** Clock events since a time, for exports and reports. */
    events(sinceMs = 0) {
      return store.state.clockEvents(sinceMs);
    },
  };
}

export type TimeGuard = ReturnType<typeof createTimeGuard>;
