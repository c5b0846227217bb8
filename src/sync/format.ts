/**
 * The BPSYNC/1 container: `BPSYNC/1\n<manifest token>\n<payload>`, read and written with bounded
 * memory. Everything here works on raw bytes: a bundle is never decoded as a whole.
 */
import { createHash, type Hash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  fstatSync,
  fsyncSync,
  openSync,
  readSync,
  writeSync,
} from 'node:fs';
import { AppError } from '../errors.ts';

export const MAGIC = 'BPSYNC/1\n';
const MAGIC_BYTES = Buffer.from(MAGIC, 'ascii');
const LF = 0x0a;

/** Size caps, checked before and while reading. */
export const LIMITS = {
  /** The whole file. */
  fileBytes: 256 * 1024 * 1024,
  /** The manifest token line, without its LF. */
  manifestBytes: 64 * 1024,
  /** One payload line (one record), without its LF. */
  lineBytes: 1024 * 1024,
  /** Records in one bundle. */
  records: 1_000_000,
} as const;

/** The reasons a bundle is refused: `details.rule` of `bundle_rejected`. */
export type SyncRule =
  | 'bad_signature'
  | 'unknown_key'
  | 'wrong_server'
  | 'replay'
  | 'rollback'
  | 'fork'
  | 'expired'
  | 'clock_unsynced'
  | 'malformed'
  | 'too_large';

/** A refusal: `bundle_rejected` (422) naming its rule. */
export function rejected(
  rule: SyncRule,
  message: string,
  details: Record<string, unknown> = {},
  hint?: string,
): AppError {
  return new AppError('bundle_rejected', message, { rule, ...details }, hint);
}

export function ruleOf(err: unknown): SyncRule | undefined {
  return err instanceof AppError && err.code === 'bundle_rejected'
    ? (err.details.rule as SyncRule)
    : undefined;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A bundle's identity: sha256 hex of its manifest token text (what `prev` chains). */
export function manifestHash(token: string): string {
  return sha256Hex(token);
}

export interface BundleHeader {
  manifest: string;
  /** Byte offset where the payload starts. */
  payloadOffset: number;
  fileSize: number;
}

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/**
 * Reads and checks the magic line and the manifest line of an open bundle file; reads at most
 * 64 KiB + a few bytes whatever the file holds.
 *
 * @throws AppError bundle_rejected (`too_large`, `malformed`)
 */
export function readHeader(fd: number): BundleHeader {
  const fileSize = fstatSync(fd).size;
  if (fileSize > LIMITS.fileBytes) {
    throw rejected(
      'too_large',
      `the bundle is ${fileSize} bytes, over the ${LIMITS.fileBytes} byte limit`,
      { size: fileSize, limit: LIMITS.fileBytes },
    );
  }
  if (fileSize === 0) throw rejected('malformed', 'the bundle file is empty');
  const want = Math.min(fileSize, MAGIC_BYTES.length + LIMITS.manifestBytes + 1);
  const head = Buffer.alloc(want);
  let got = 0;
  while (got < want) {
    const n = readSync(fd, head, got, want - got, got);
    if (n === 0) break;
    got += n;
  }
  const bytes = head.subarray(0, got);
  if (!bytes.subarray(0, MAGIC_BYTES.length).equals(MAGIC_BYTES)) {
    throw rejected(
      'malformed',
      `the file does not start with "BPSYNC/1\\n": ${describeStart(bytes)}`,
    );
  }
  const lf = bytes.indexOf(LF, MAGIC_BYTES.length);
  if (lf < 0) {
    if (got - MAGIC_BYTES.length > LIMITS.manifestBytes) {
      throw rejected(
        'too_large',
        `the manifest line is over the ${LIMITS.manifestBytes} byte limit`,
        { limit: LIMITS.manifestBytes },
      );
    }
    throw rejected(
      'malformed',
      'the manifest line has no line feed after it (the file is truncated)',
    );
  }
  const line = bytes.subarray(MAGIC_BYTES.length, lf);
  if (line.length === 0) throw rejected('malformed', 'the manifest line is empty');
  // A token is printable ASCII; a CR here means the file was converted to CRLF line ends.
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === 0x0d)
      throw rejected(
        'malformed',
        'the manifest line ends with CR: the file has CRLF line ends (BPSYNC/1 uses LF only; copy it in binary mode)',
      );
    if (c < 0x21 || c > 0x7e)
      throw rejected(
        'malformed',
        `the manifest line holds a byte (0x${c.toString(16).padStart(2, '0')}) that no PASETO token contains, at offset ${MAGIC_BYTES.length + i}`,
      );
  }
  return { manifest: line.toString('ascii'), payloadOffset: lf + 1, fileSize };
}

function describeStart(bytes: Buffer): string {
  if (bytes.subarray(0, 3).equals(BOM))
    return 'it starts with a UTF-8 byte order mark (BPSYNC/1 files have none; save without BOM)';
  if (bytes.subarray(0, 10).equals(Buffer.from('BPSYNC/1\r\n')))
    return 'it has CRLF line ends (BPSYNC/1 uses LF only; copy it in binary mode)';
  if (bytes.subarray(0, 7).equals(Buffer.from('BPSYNC/')))
    return 'it is another version of the format';
  return 'it is not a BPSYNC/1 bundle';
}

/** Counts and hashes bytes [start, end of file) with a stream: the first, cheap pass over a payload. */
export function hashFileRegion(
  file: string,
  start: number,
): Promise<{ bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    const stream = createReadStream(file, { start, highWaterMark: 1 << 20 });
    stream.on('data', (chunk) => {
      bytes += chunk.length;
      hash.update(chunk as Buffer);
    });
    stream.on('error', reject);
    stream.on('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
  });
}

/**
 * Splits bytes [start, end) of a file into LF-terminated lines, synchronously (so it can run inside
 * a better-sqlite3 transaction), hashing everything it reads. Memory: one 1 MiB chunk plus the
 * longest line, which is capped.
 */
export class LineReader {
  readonly hash: Hash = createHash('sha256');
  private readonly chunk = Buffer.allocUnsafe(1 << 20);
  private chunkLen = 0;
  private chunkPos = 0;
  private readonly fd: number;
  private readonly end: number;
  private readonly maxLine: number;
  private pos: number;
  private carry: Buffer[] = [];
  private carryLen = 0;
  /** Lines returned so far. */
  lineNo = 0;

  constructor(fd: number, start: number, end: number, maxLine: number = LIMITS.lineBytes) {
    this.fd = fd;
    this.pos = start;
    this.end = end;
    this.maxLine = maxLine;
  }

  /** The next line without its LF, or null at the end. The buffer is only valid until the next call. */
  next(): Buffer | null {
    for (;;) {
      if (this.chunkPos < this.chunkLen) {
        const lf = this.chunk.indexOf(LF, this.chunkPos);
        if (lf >= 0 && lf < this.chunkLen) {
          const piece = this.chunk.subarray(this.chunkPos, lf);
          this.checkLength(this.carryLen + piece.length);
          this.chunkPos = lf + 1;
          this.lineNo++;
          if (this.carryLen === 0) return piece;
          const line = Buffer.concat([...this.carry, piece]);
          this.carry = [];
          this.carryLen = 0;
          return line;
        }
        const rest = this.chunk.subarray(this.chunkPos, this.chunkLen);
        this.checkLength(this.carryLen + rest.length);
        this.carry.push(Buffer.from(rest));
        this.carryLen += rest.length;
        this.chunkPos = this.chunkLen;
      }
      if (this.pos >= this.end) {
        if (this.carryLen > 0)
          throw rejected(
            'malformed',
            `record ${this.lineNo + 1} does not end with a line feed (every payload line ends with LF)`,
          );
        return null;
      }
      const n = readSync(
        this.fd,
        this.chunk,
        0,
        Math.min(this.chunk.length, this.end - this.pos),
        this.pos,
      );
      if (n === 0) throw rejected('malformed', 'the file became shorter while it was read');
      this.hash.update(this.chunk.subarray(0, n));
      this.pos += n;
      this.chunkLen = n;
      this.chunkPos = 0;
    }
  }

  private checkLength(n: number): void {
    if (n > this.maxLine) {
      throw rejected(
        'too_large',
        `record ${this.lineNo + 1} is over the ${this.maxLine} byte limit for one line`,
        { limit: this.maxLine },
      );
    }
  }
}

/**
 * Writes JSON Lines to a file descriptor through a 1 MiB buffer, counting and hashing them: the
 * payload side of a bundle being built.
 */
export class PayloadWriter {
  private readonly hash = createHash('sha256');
  private buf = Buffer.allocUnsafe(1 << 20);
  private used = 0;
  bytes = 0;
  records = 0;

  private readonly fd: number;

  constructor(fd: number) {
    this.fd = fd;
  }

  /** Appends one record as a JSON line. */
  write(record: Record<string, unknown>): void {
    const line = Buffer.from(`${JSON.stringify(record)}\n`, 'utf8');
    if (line.length - 1 > LIMITS.lineBytes)
      throw new AppError(
        'internal',
        `a ${String(record.op)} record is over the ${LIMITS.lineBytes} byte line limit`,
      );
    this.hash.update(line);
    this.bytes += line.length;
    this.records++;
    if (this.used + line.length > this.buf.length) this.flush();
    if (line.length > this.buf.length) writeAll(this.fd, line);
    else {
      line.copy(this.buf, this.used);
      this.used += line.length;
    }
  }

  flush(): void {
    if (this.used > 0) writeAll(this.fd, this.buf.subarray(0, this.used));
    this.used = 0;
  }

  /** Flushes and returns the payload's length, hash and record count. */
  finish(): { len: number; sha256: string; records: number } {
    this.flush();
    return { len: this.bytes, sha256: this.hash.digest('hex'), records: this.records };
  }
}

export function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += writeSync(fd, data, off, data.length - off);
}

/** Writes `BPSYNC/1\n<manifest>\n` then copies the payload from another file; fsyncs. */
export function assembleBundle(outFd: number, manifest: string, payloadFile: string): void {
  writeAll(outFd, Buffer.from(`${MAGIC}${manifest}\n`, 'ascii'));
  const inFd = openSync(payloadFile, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    let pos = 0;
    for (;;) {
      const n = readSync(inFd, buf, 0, buf.length, pos);
      if (n === 0) break;
      writeAll(outFd, buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(inFd);
  }
  fsyncSync(outFd);
}
