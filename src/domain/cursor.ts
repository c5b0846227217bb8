import { AppError } from '../errors.ts';
import type { Page } from './types.ts';

/** An opaque list cursor: a tag naming the list and the last key seen, in base64url. */
export function encodeCursor(tag: string, key: string | number): string {
  return Buffer.from(`${tag}:${key}`).toString('base64url');
}

/**
 * The key inside a cursor this server gave out for this list.
 *
 * @throws AppError `invalid_request` (details.issues names `cursor`) for any other cursor
 */
export function decodeCursor(tag: string, cursor: string, key: RegExp): string {
  const text = Buffer.from(cursor, 'base64url').toString();
  const value = text.startsWith(`${tag}:`) ? text.slice(tag.length + 1) : '';
  if (!key.test(value))
    throw new AppError('invalid_request', 'cursor is not one this server gave out', {
      issues: [{ path: 'cursor', message: 'unknown cursor' }],
    });
  return value;
}

export const SEQ_KEY = /^\d{1,15}$/;

/** The default page size of the admin lists (entitlements, leases). */
export const DEFAULT_PAGE_SIZE = 50;

/**
 * Keyset paging, the one home of its slicing: the caller reads `limit + 1` rows after the cursor's
 * key; a row beyond `limit` means there is a next page, whose cursor `cursorOf` makes from the
 * last row shown (usually encodeCursor with the list's tag).
 */
export function pageOf<T>(rows: T[], limit: number, cursorOf: (last: T) => string): Page<T> {
  if (rows.length <= limit) return { items: rows, nextCursor: null };
  const items = rows.slice(0, limit);
  return { items, nextCursor: cursorOf(items[limit - 1]!) };
}
