/**
 * The one parser of whole numbers typed by a person: every CLI option and environment variable
 * that takes a count, a size, a duration or a sequence number goes through it, so each refuses
 * the same inputs with the same words and the same exit code (2, a usage error).
 */
import { AppError } from './errors.ts';

export interface IntegerSpec {
  /** How the person wrote it: the flag (`--port`) or the environment variable (`BPLS_PORT`). */
  name: string;
  /** Smallest accepted value (default 0). */
  min?: number;
  /** Largest accepted value (default Number.MAX_SAFE_INTEGER: then no upper bound is stated). */
  max?: number;
  /** The unit the number counts, for the message: `seconds`, `milliseconds`, `days`. */
  unit?: string;
}

/**
 * Decimal digits only, at most 16 of them: `''`, `' 8080'`, `+1`, `-1`, `1.5`, `0x50` and `1e3`
 * are refused (Number() would read some of them as another number than the person meant).
 */
const DIGITS = /^\d{1,16}$/;

/**
 * Reads a whole number in decimal digits within [min, max].
 *
 * @returns the number
 * @throws AppError `invalid_request` with `details.usage = true` (the CLI exits 2) and
 *   `details.issues = [{ path: name, message }]`; the message is always
 *   "NAME must be a whole number[ of UNIT], MIN to MAX" (or "..., at least MIN" without a max).
 */
export function parseIntegerOption(raw: string, spec: IntegerSpec): number {
  const min = spec.min ?? 0;
  const max = spec.max ?? Number.MAX_SAFE_INTEGER;
  const n = DIGITS.test(raw) ? Number(raw) : NaN;
  if (Number.isSafeInteger(n) && n >= min && n <= max) return n;
  const range = max === Number.MAX_SAFE_INTEGER ? `at least ${min}` : `${min} to ${max}`;
  const message = `${spec.name} must be a whole number${spec.unit ? ` of ${spec.unit}` : ''}, ${range}`;
  throw new AppError('invalid_request', message, {
    usage: true,
    issues: [{ path: spec.name, message }],
  });
}

/** parseIntegerOption for an option that may be absent: undefined stays undefined. */
export function parseOptionalInteger(
  raw: string | undefined,
  spec: IntegerSpec,
): number | undefined {
  return raw === undefined ? undefined : parseIntegerOption(raw, spec);
}
