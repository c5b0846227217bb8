/**
 * What a command parsed from its flags, refused in the words the person typed: the schemas name
 * API fields (`ends_at`, `policy_json.type`, `tenant_id`), the CLI names the flags that set them
 * (`--ends`, `--type`, `--tenant`). Each command declares its field → flag mapping beside its
 * options and parses with parseFlags.
 */
import type { z } from 'zod';
import { AppError } from './errors.ts';
import { parseWith } from './schemas.ts';

/** A command's field → flag mapping: `{ends_at: '--ends', 'policy_json.type': '--type'}`. */
export type FlagNames = Readonly<Record<string, string>>;

interface Issue {
  path: string;
  message: string;
}

/** The field of `flags` that `path` is or lies under (the longest: `policy_json.quotas.x` → `policy_json.quotas`). */
function fieldOf(path: string, flags: FlagNames): string | undefined {
  let best: string | undefined;
  for (const field of Object.keys(flags))
    if (
      (path === field || path.startsWith(`${field}.`) || path.startsWith(`${field}[`)) &&
      (best === undefined || field.length > best.length)
    )
      best = field;
  return best;
}

/** `text` with each field name of `flags` (whole, or its last part) as the flag. */
function reworded(text: string, flags: FlagNames): string {
  let out = text;
  const names = Object.entries(flags).flatMap(([field, flag]) => {
    const leaf = field.split('.').pop()!;
    return leaf === field
      ? [[field, flag]]
      : [
          [field, flag],
          [leaf, flag],
        ];
  });
  // Longest first: `max_seats` before a shorter name it contains.
  for (const [name, flag] of names.sort((a, b) => b[0]!.length - a[0]!.length))
    out = out.replace(new RegExp(`(?<![\\w.-])${name}(?![\\w])`, 'g'), flag!);
  return out;
}

/**
 * An invalid_request whose message names flags. `details` stays the API's (issues by field, as
 * the HTTP face answers, so a script reads --json the same from both faces); `flagIssues` is
 * what the person at the terminal reads under the message.
 */
export class FlagError extends AppError {
  constructor(
    message: string,
    details: AppError['details'],
    hint: string | undefined,
    readonly flagIssues: readonly Issue[],
  ) {
    super('invalid_request', message, details, hint);
  }
}

/**
 * `err` in flag terms: each issue's path becomes the flag that sets it, field names in its
 * message become flags, and only the first issue of each flag is kept (a later one follows from
 * it); the message says the first. Anything but an invalid_request with issues is returned as it
 * is.
 */
export function inFlagTerms(err: unknown, what: string, flags: FlagNames): unknown {
  if (!(err instanceof AppError) || err.code !== 'invalid_request') return err;
  const issues = err.details.issues;
  if (!Array.isArray(issues) || issues.length === 0) return err;
  const seen = new Set<string>();
  const named: Issue[] = [];
  for (const i of issues as Issue[]) {
    const field = fieldOf(i.path, flags);
    const path = field === undefined ? i.path : flags[field]!;
    if (seen.has(path)) continue;
    seen.add(path);
    named.push({ path, message: reworded(i.message, flags) });
  }
  const first = named[0]!;
  // A message that names its flag already says it alone: "a tenant_admin token needs --tenant".
  const said = first.message.includes(first.path)
    ? first.message
    : `${first.path}: ${first.message}`;
  return new FlagError(`invalid ${what}: ${said}`, err.details, err.hint, named);
}

/**
 * parseWith for values a command built from its flags: the same checks, errors in flag terms.
 *
 * @throws FlagError (`invalid_request`): the message names the flag; details.issues stay by field
 */
export function parseFlags<S extends z.ZodType>(
  schema: S,
  value: unknown,
  what: string,
  flags: FlagNames,
): z.output<S> {
  try {
    return parseWith(schema, value, what);
  } catch (err) {
    throw inFlagTerms(err, what, flags);
  }
}
