import { createHash } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { LIMITS, rejected, writeAll } from './format.ts';

/**
 * Streams a request body to a new file, refusing it (`too_large`) as soon as it passes the bundle
 * size cap: by its declared length before reading, and by counting while writing.
 */
export async function receiveToFile(
  body: ReadableStream<Uint8Array> | null,
  declaredLength: number | undefined,
  file: string,
): Promise<{ file: string; bytes: number; sha256: string }> {
  const cap = LIMITS.fileBytes;
  if (declaredLength !== undefined && declaredLength > cap) {
    throw rejected(
      'too_large',
      `the bundle is ${declaredLength} bytes, over the ${cap} byte limit`,
      { size: declaredLength, limit: cap },
    );
  }
  const hash = createHash('sha256');
  const fd = openSync(file, 'wx', 0o600);
  let bytes = 0;
  try {
    if (body) {
      const reader = body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        bytes += value.byteLength;
        if (bytes > cap) {
          await reader.cancel().catch(() => {});
          throw rejected('too_large', `the bundle is over the ${cap} byte limit`, { limit: cap });
        }
        hash.update(value);
        writeAll(fd, value);
      }
    }
  } finally {
    closeSync(fd);
  }
  return { file, bytes, sha256: hash.digest('hex') };
}
