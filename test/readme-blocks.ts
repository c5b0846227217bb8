/**
 * The README's fenced blocks as test/e2e/readme-run.test.ts runs them: which blocks run, which are
 * saved as files, which are skipped (and why), the answer comments under the commands, and the one
 * bash script that pastes them all in order. The conventions are the README's ("Entitlements" and
 * "Development"):
 *
 * - `<!-- readme-test: skip (reason) -->` on the line before a fence: the block is not run.
 * - `<!-- readme-test: save as FILE -->` before a ```js block: it is written to FILE in the checkout
 *   (a later ```sh block runs it).
 * - In a ```sh block, a comment under a command (or after it, past whitespace) is its answer:
 *   `# 201 {…}` (HTTP status, then fields the answer must hold; `…` in a string matches anything),
 *   `# 409 conflict` (status and error code), `# prints: text` (a line of its output, `…` likewise).
 *   A note in parentheses after two spaces (`  (why)`) is for the reader only.
 */

/** A fenced block: its info string (`sh`, `js`, `json`, `rust`, or empty), text and where it starts. */
export interface Block {
  lang: string;
  text: string;
  /** 1-based line of the opening fence. */
  line: number;
  marker: Marker | undefined;
}

export type Marker = { kind: 'skip'; reason: string } | { kind: 'save'; file: string };

/** What an answer comment says the command answers. */
export type Expectation =
  | { kind: 'http'; status: number; fields?: unknown; code?: string; source: string }
  | { kind: 'prints'; pattern: string; source: string };

/** One command of a ```sh block (continuation lines joined), with its answer comment if any. */
export interface Command {
  text: string;
  /** 1-based README line of its first line. */
  line: number;
  expect: Expectation | undefined;
}

const MARKER = /^<!--\s*readme-test:\s*(.*?)\s*-->$/;
const FENCE = /^(\s*)```(\S*)\s*$/;

function parseMarker(text: string, line: number): Marker {
  const skip = /^skip \((.+)\)$/.exec(text);
  if (skip) return { kind: 'skip', reason: skip[1]! };
  const save = /^save as ([\w.-]+)$/.exec(text);
  if (save) return { kind: 'save', file: save[1]! };
  throw new Error(`README line ${line}: unknown readme-test marker ${JSON.stringify(text)}`);
}

/**
 * Every fenced block of `markdown`, in order, with the marker on the line before it.
 * @throws Error on a fence that never closes, an unknown marker, or a marker not directly before a fence.
 */
export function readmeBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  let pending: { marker: Marker; line: number } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const marker = MARKER.exec(line.trim());
    if (marker) {
      pending = { marker: parseMarker(marker[1]!, i + 1), line: i + 1 };
      continue;
    }
    const open = FENCE.exec(line);
    if (!open) {
      if (line.trim() !== '' && pending) {
        throw new Error(`README line ${pending.line}: a readme-test marker must precede a fence`);
      }
      continue;
    }
    const indent = open[1]!.length;
    const body: string[] = [];
    let j;
    for (j = i + 1; j < lines.length && lines[j]!.trim() !== '```'; j++) {
      body.push(lines[j]!.slice(indent));
    }
    if (j === lines.length) throw new Error(`README line ${i + 1}: a fence that never closes`);
    blocks.push({ lang: open[2]!, text: body.join('\n'), line: i + 1, marker: pending?.marker });
    pending = undefined;
    i = j;
  }
  return blocks;
}

/** The JSON value at the start of `text` (an object or array), and what follows it. */
function leadingJson(text: string): [string, string] {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) return [text.slice(0, i + 1), text.slice(i + 1)];
    }
  }
  throw new Error(`unbalanced JSON in the answer comment: ${text}`);
}

/**
 * The expectation an answer comment states, or undefined for an ordinary comment.
 * @param comment the comment's text after `#`.
 * @throws Error when a `# NNN {…}` comment's JSON does not parse (the convention is broken).
 */
export function parseExpectation(comment: string): Expectation | undefined {
  const source = comment.trim();
  const said = source.replace(/\s{2,}\(.*\)$/, '');
  const prints = /^prints:\s*(.+)$/.exec(said);
  if (prints) return { kind: 'prints', pattern: prints[1]!.trim(), source };
  const http = /^(\d{3})(?:\s+(.*))?$/.exec(said);
  if (!http) return undefined;
  const status = Number(http[1]);
  const rest = (http[2] ?? '').trim();
  if (rest.startsWith('{') || rest.startsWith('[')) {
    const [json] = leadingJson(rest);
    let fields: unknown;
    try {
      fields = JSON.parse(json);
    } catch (err) {
      throw new Error(`the answer comment "# ${source}" is not JSON: ${(err as Error).message}`);
    }
    return { kind: 'http', status, fields, source };
  }
  const code = /^([a-z_]+)$/.exec(rest);
  if (status >= 400 && code) return { kind: 'http', status, code: code[1]!, source };
  if (rest !== '') throw new Error(`the answer comment "# ${source}" is neither {json} nor a code`);
  return { kind: 'http', status, source };
}

/** A trailing answer comment on a command line: whitespace, `#`, then a status or `prints:`. */
const TRAILING = /\s#\s*((?:\d{3}\b|prints:).*)$/;

/** True when a command goes on past this text: a trailing `\\`, or a quote still open. */
function continues(text: string): boolean {
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote === "'") {
      if (c === "'") quote = undefined;
    } else if (c === '\\') i++;
    else if (quote === '"') {
      if (c === '"') quote = undefined;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]!))) {
      // a comment: the rest of the line is not shell
      const eol = text.indexOf('\n', i);
      if (eol < 0) break;
      i = eol;
    }
  }
  return quote !== undefined || text.endsWith('\\');
}

/** The commands of a ```sh block, `\`-continued lines joined, with their answer comments. */
export function commandsOf(block: Block): Command[] {
  const commands: Command[] = [];
  const lines = block.text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    if (line.trim().startsWith('#')) {
      const expect = parseExpectation(line.trim().slice(1));
      const last = commands[commands.length - 1];
      if (expect && last) {
        if (last.expect) throw new Error(`README line ${block.line + 1 + i}: two answers`);
        last.expect = expect;
      }
      continue;
    }
    const start = i;
    const parts = [line];
    while (continues(parts.join('\n')) && i + 1 < lines.length) parts.push(lines[++i]!);
    const trailing = TRAILING.exec(parts[parts.length - 1]!);
    commands.push({
      text: parts.join('\n'),
      line: block.line + 1 + start,
      expect: trailing ? parseExpectation(trailing[1]!) : undefined,
    });
  }
  return commands;
}

/** `…` as "anything", the rest literal, the whole string. */
function wildcard(pattern: string): RegExp {
  const parts = pattern.split('…').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${parts.join('.*')}$`, 's');
}

/**
 * Where `actual` differs from what an answer comment shows: every field shown must be there with
 * that value (strings with `…` match as patterns; arrays have the length shown); fields not shown
 * are not checked. An empty list means it matches.
 */
export function mismatches(expected: unknown, actual: unknown, path = '$'): string[] {
  if (typeof expected === 'string') {
    const ok =
      typeof actual === 'string' &&
      (expected.includes('…') ? wildcard(expected).test(actual) : actual === expected);
    return ok ? [] : [`${path}: ${JSON.stringify(actual)} is not ${JSON.stringify(expected)}`];
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) {
      return [`${path}: ${JSON.stringify(actual)} is not ${expected.length} items`];
    }
    return expected.flatMap((e, i) => mismatches(e, actual[i], `${path}[${i}]`));
  }
  if (expected !== null && typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) {
      return [`${path}: ${JSON.stringify(actual)} is not an object`];
    }
    return Object.entries(expected).flatMap(([k, v]) =>
      mismatches(v, (actual as Record<string, unknown>)[k], `${path}.${k}`),
    );
  }
  return Object.is(expected, actual)
    ? []
    : [`${path}: ${JSON.stringify(actual)} is not ${JSON.stringify(expected)}`];
}

/** True when some line of `output` matches a `# prints:` pattern. */
export function printsMatch(pattern: string, output: string): boolean {
  const re = wildcard(pattern);
  return output.split('\n').some((l) => re.test(l.trim()));
}

/** A command the script marks off, so its output and curl's status can be read back. */
export interface Checked {
  id: number;
  command: Command;
}

/**
 * One bash script that runs every block in order: ```sh blocks as they are (with 8080 replaced by
 * `port`), ```js blocks with a save marker written to their file, skipped blocks left out. Each
 * command with an answer comment is marked off on stdout and stderr (`@@begin N`, `@@end N`), and
 * curl (a shell function wrapping the real one) also writes `@@status NNN` to stderr, so the HTTP
 * status is known without changing what the README's commands print or keep.
 */
export function sessionScript(
  blocks: readonly Block[],
  port: number,
): {
  script: string;
  checked: Checked[];
} {
  const portOf = (text: string) => text.replaceAll(':8080', `:${port}`);
  const out = [
    'set -Eeuo pipefail',
    'trap \'rc=$?; echo "@@failed (exit $rc) at README line $README_LINE: $BASH_COMMAND" >&2\' ERR',
    'curl() { command curl -w \'%{stderr}\\n@@status %{http_code}\\n\' "$@"; }',
  ];
  const checked: Checked[] = [];
  const mark = (what: string, id: number) =>
    `printf '\\n@@${what} ${id}\\n'; printf '\\n@@${what} ${id}\\n' >&2`;
  for (const block of blocks) {
    if (block.marker?.kind === 'skip') continue;
    if (block.lang === 'js' && block.marker?.kind === 'save') {
      out.push(`README_LINE=${block.line}`);
      out.push(`cat > '${block.marker.file}' <<'README_TEST_EOF'`, portOf(block.text));
      out.push('README_TEST_EOF');
      continue;
    }
    if (block.lang !== 'sh') continue;
    for (const command of commandsOf(block)) {
      out.push(`README_LINE=${command.line}`);
      if (command.expect === undefined) {
        out.push(portOf(command.text));
        continue;
      }
      const id = checked.length;
      checked.push({ id, command });
      out.push(mark('begin', id), portOf(command.text), mark('end', id));
    }
  }
  return { script: `${out.join('\n')}\n`, checked };
}

/** The text between `@@begin id` and `@@end id` in one of the session's streams. */
export function segment(stream: string, id: number): string {
  const begin = stream.indexOf(`\n@@begin ${id}\n`);
  const end = stream.indexOf(`\n@@end ${id}\n`);
  if (begin < 0 || end < begin) return '';
  return stream.slice(begin + `\n@@begin ${id}\n`.length, end);
}
