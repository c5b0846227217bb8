/** Time for the domain. Domain code never calls Date.now(): tests and the clock rules control it. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  private ms: number;
  constructor(start: number | string | Date) {
    this.ms = typeof start === 'number' ? start : new Date(start).getTime();
  }
  now(): number {
    return this.ms;
  }
  set(at: number | string | Date): void {
    this.ms = typeof at === 'number' ? at : new Date(at).getTime();
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

/** RFC 3339 UTC with second precision, as the API shows times: 2024-01-15T11:30:00Z. */
export function toIso(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}
