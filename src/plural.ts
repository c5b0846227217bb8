/**
 * Counted nouns for messages people read: "1 seat", "2 seats", "the 1 seat … is", "all 2 seats …
 * are". One home for the rule so no message says "all 1 seats" or "its 1 overdraft seats".
 */

/** `n` and the noun in the number it takes: `counted(1, 'seat')` → "1 seat", 2 → "2 seats". */
export function counted(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}

/** Every one of `n`: `every(1, 'seat')` → "the 1 seat", 2 → "all 2 seats". */
export function every(n: number, noun: string, plural = `${noun}s`): string {
  return n === 1 ? `the 1 ${noun}` : `all ${n} ${plural}`;
}

/** The verb "to be" agreeing with `n` things: "is" for 1, else "are". */
export function be(n: number): 'is' | 'are' {
  return n === 1 ? 'is' : 'are';
}
