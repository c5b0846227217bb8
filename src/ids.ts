import { randomFillSync } from 'node:crypto';

// Random bytes are drawn from the CSPRNG in blocks: one system call per 256 ids, not one per id.
const pool = Buffer.alloc(4096);
let offset = pool.length;

function take(n: number): Buffer {
  if (offset + n > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = Buffer.from(pool.subarray(offset, offset + n));
  // Never hand out the same bytes twice.
  pool.fill(0, offset, offset + n);
  offset += n;
  return out;
}

/** Prefixed random ids: `ent_` + 128 random bits in base64url (22 chars). */
export function newId(
  prefix: 'ent' | 'tok' | 'lease' | 'seat' | 'req' | 'srv' | 'evt' | 'inst',
  bytes = 16,
): string {
  return `${prefix}_${take(bytes).toString('base64url')}`;
}

/**
 * Ids that are inserted at a high rate (leases): 48 bits of milliseconds, then 128 random bits.
 * The time prefix keeps the id index appending at its right edge instead of dirtying a random page
 * per insert; the random part alone is the proof of possession.
 */
export function newSequentialId(prefix: 'lease', nowMs: number): string {
  const b = Buffer.allocUnsafe(22);
  b.writeUIntBE(Math.max(0, Math.floor(nowMs)) % 2 ** 48, 0, 6);
  take(16).copy(b, 6);
  return `${prefix}_${b.toString('base64url')}`;
}
