import { describe, expect, it } from 'vitest';
import { expectTokenError } from '../../test/token-assert.ts';
import { decodeBase64Url, encodeBase64Url } from './base64url.ts';

describe('base64url', () => {
  it('round-trips every length from 0 to 40 bytes without padding', () => {
    for (let n = 0; n <= 40; n++) {
      const bytes = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff));
      const text = encodeBase64Url(bytes);
      expect(text).not.toContain('=');
      expect(decodeBase64Url(text).equals(bytes)).toBe(true);
    }
  });

  it('encodes with the URL-safe alphabet', () => {
    expect(encodeBase64Url(Buffer.from([0xfb, 0xff, 0xbf]))).toBe('-_-_');
  });

  it('encodes a view into a larger buffer using only the viewed bytes', () => {
    const big = Buffer.from('xxhelloxx');
    expect(encodeBase64Url(big.subarray(2, 7))).toBe(Buffer.from('hello').toString('base64url'));
  });

  it('rejects "=" padding', () => {
    expect(Buffer.from('aGk=', 'base64url').toString()).toBe('hi'); // node alone would accept it
    expectTokenError(() => decodeBase64Url('aGk='), 'malformed', 'padding "="', 'offset 3');
  });

  it('rejects the standard-alphabet characters "+" and "/"', () => {
    expectTokenError(() => decodeBase64Url('ab+c'), 'malformed', '"+"', 'standard base64 alphabet');
    expectTokenError(() => decodeBase64Url('ab/c'), 'malformed', '"/"', 'standard base64 alphabet');
  });

  it('rejects whitespace and other characters', () => {
    expectTokenError(() => decodeBase64Url('ab c'), 'malformed', 'only A-Z');
    expectTokenError(() => decodeBase64Url('abc\n'), 'malformed', 'only A-Z');
    expectTokenError(() => decodeBase64Url('abé'), 'malformed', 'only A-Z');
  });

  it('rejects a length that leaves one dangling character', () => {
    expectTokenError(
      () => decodeBase64Url('abcde', 'token footer'),
      'malformed',
      'token footer',
      'length 5',
    );
  });

  it('rejects non-zero unused bits in the last character (non-canonical encodings)', () => {
    // "hi" is aGk; "aGl" decodes to the same two bytes in a lenient decoder.
    expect(Buffer.from('aGl', 'base64url').toString()).toBe('hi');
    expectTokenError(() => decodeBase64Url('aGl'), 'malformed', 'not canonical', 'unused bits');
    // One byte: 4 unused bits.
    expect(decodeBase64Url('aA').equals(Buffer.from('h'))).toBe(true);
    for (const last of 'BCDEFGHIJKLMNOP') {
      expectTokenError(() => decodeBase64Url(`a${last}`), 'malformed', 'not canonical');
    }
  });

  it('accepts the empty string as zero bytes', () => {
    expect(decodeBase64Url('').length).toBe(0);
  });
});
