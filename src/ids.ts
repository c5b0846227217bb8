import { randomBytes } from 'node:crypto';

/** Prefixed random ids: `ent_` + 128 random bits in base64url (22 chars). */
export function newId(prefix: 'ent' | 'tok' | 'lease' | 'seat' | 'req' | 'srv' | 'evt', bytes = 16): string {
  return `${prefix}_${randomBytes(bytes).toString('base64url')}`;
}
