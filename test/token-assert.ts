import { expect } from 'vitest';
import { TokenError, type TokenErrorCode } from '../src/tokens/errors.ts';

/** Asserts fn throws a TokenError with this code and a message holding every fragment. */
export function expectTokenError(
  fn: () => unknown,
  code: TokenErrorCode,
  ...fragments: string[]
): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(TokenError);
  expect((caught as TokenError).code).toBe(code);
  for (const fragment of fragments) expect((caught as TokenError).message).toContain(fragment);
}
