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
export function newId(prefix: 'ent' | 'tok' | 'lease' | 'seat' | 'req' | 'srv' | 'evt', bytes = 16): string {
  return `${prefix}_${take(bytes).toString('base64url')}`;
}
