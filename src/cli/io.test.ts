import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createStreamOutput } from './io.ts';

/** A stream whose reader takes nothing until `drain()`: what a stalled log reader looks like. */
function stalledStream() {
  const held: Array<() => void> = [];
  const stream = new Writable({
    highWaterMark: 1,
    write(_chunk, _enc, done) {
      held.push(done);
    },
  }) as unknown as NodeJS.WriteStream;
  return {
    stream,
    /** The reader takes `n` queued writes, one at a time as a stream hands them over. */
    async take(n: number) {
      for (let i = 0; i < n; i++) {
        held.shift()?.();
        await new Promise((r) => setImmediate(r));
      }
    },
  };
}

describe('createStreamOutput: a bounded queue for a stalled reader', () => {
  it('drops past the bound, and keeps dropping until the queue is down to half (one gap, not many)', async () => {
    const { stream, take } = stalledStream();
    const out = createStreamOutput(stream, { maxQueuedBytes: 1000 });
    const line = 'x'.repeat(99) + '\n'; // 100 bytes
    const written = Array.from({ length: 12 }, () => out.write(line));
    // The first write goes to the reader at once; then ten more fill the queue to its bound.
    expect(written.filter(Boolean).length).toBeGreaterThanOrEqual(10);
    expect(written.at(-1)).toBe(false);
    // The reader takes a little: still over half, still dropped.
    await take(2);
    expect(out.write(line)).toBe(false);
    // Down to half: written again.
    await take(4);
    expect(stream.writableLength).toBeLessThanOrEqual(500);
    expect(out.write(line)).toBe(true);
    expect(out.failed).toBe(false);
  });
});
