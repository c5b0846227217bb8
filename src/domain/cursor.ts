import { AppError } from '../errors.ts';

/** An opaque list cursor: a tag naming the list and the last key seen, in base64url. */
export function encodeCursor(tag: string, key: string | number): string {
  return Buffer.from(`${tag}:${key}`).toString('base64url');
}

/** The key inside a cursor this server gave out for this list; anything else is invalid_request. */
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
