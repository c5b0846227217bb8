import { preview } from './errors.ts';

/**
 * Nesting limit for parseStrictJson. Claims are flat in practice; the limit stops a 64 KiB token
 * of `[[[[…` from exhausting the stack (which would surface as a RangeError, not a StrictJsonError).
 */
export const MAX_JSON_DEPTH = 64;

// Character codes, as plain constants so every bundler and transpiler inlines them the same way.
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const QUOTE = 0x22;
const PLUS = 0x2b;
const COMMA = 0x2c;
const MINUS = 0x2d;
const DOT = 0x2e;
const SLASH = 0x2f;
const ZERO = 0x30;
const ONE = 0x31;
const NINE = 0x39;
const COLON = 0x3a;
const UPPER_E = 0x45;
const LBRACKET = 0x5b;
const BACKSLASH = 0x5c;
const RBRACKET = 0x5d;
const LOWER_B = 0x62;
const LOWER_E = 0x65;
const LOWER_F = 0x66;
const LOWER_N = 0x6e;
const LOWER_R = 0x72;
const LOWER_T = 0x74;
const LOWER_U = 0x75;
const LBRACE = 0x7b;
const RBRACE = 0x7d;

/**
 * Why parseStrictJson refused a text: `offset` is the UTF-16 index where the fault starts (a key,
 * a number, the character that broke the grammar), `reason` says which rule it broke. The
 * message is `invalid JSON at offset <offset>: <reason>`; callers that name their own subject (a
 * token's claims, a bundle record, a file) build their message from {@link where} instead of
 * editing this one.
 */
export class StrictJsonError extends Error {
  readonly offset: number;
  readonly reason: string;

  constructor(offset: number, reason: string) {
    super(`invalid JSON at offset ${offset}: ${reason}`);
    this.name = 'StrictJsonError';
    this.offset = offset;
    this.reason = reason;
  }

  /** `at offset <offset>: <reason>`, to follow "<subject> is not valid JSON ". */
  get where(): string {
    return `at offset ${this.offset}: ${this.reason}`;
  }
}

/**
 * Parses RFC 8259 JSON under the I-JSON rules (RFC 7493) that matter for signed claims.
 *
 * Rejects what `JSON.parse` silently accepts or silently changes:
 * - duplicate object keys at any depth (JSON.parse keeps the last one, so two readers of the same
 *   signed bytes could disagree about a claim);
 * - integers outside ±(2^53−1) and numbers whose integer-ness changes when read as a double
 *   (9007199254740993 would become …992; 1.0000000000000000001 would become 1);
 * - non-finite results (1e400);
 * - the key `__proto__`, which becomes a prototype assignment in code that copies objects;
 * - lone UTF-16 surrogates, raw or escaped, which cannot be re-encoded as UTF-8;
 * - nesting deeper than {@link MAX_JSON_DEPTH}.
 *
 * @throws StrictJsonError naming the offset and the rule broken (never a RangeError or a
 *   SyntaxError, whatever the input)
 */
export function parseStrictJson(text: string): unknown {
  return new StrictParser(text).parseDocument();
}

class StrictParser {
  private readonly src: string;
  private readonly len: number;
  private pos = 0;

  constructor(src: string) {
    this.src = src;
    this.len = src.length;
  }

  parseDocument(): unknown {
    const value = this.parseValue(0);
    this.skipWhitespace();
    if (this.pos !== this.len) this.fail('unexpected data after the JSON value');
    return value;
  }

  private fail(reason: string, at = this.pos): never {
    throw new StrictJsonError(at, reason);
  }

  private skipWhitespace(): void {
    const src = this.src;
    let pos = this.pos;
    for (;;) {
      const c = src.charCodeAt(pos);
      if (c === SPACE || c === LF || c === CR || c === TAB) pos++;
      else break;
    }
    this.pos = pos;
  }

  private parseValue(depth: number): unknown {
    this.skipWhitespace();
    const c = this.src.charCodeAt(this.pos);
    switch (c) {
      case QUOTE:
        return this.parseString();
      case LBRACE:
        return this.parseObject(depth + 1);
      case LBRACKET:
        return this.parseArray(depth + 1);
      case LOWER_T:
        return this.parseLiteral('true', true);
      case LOWER_F:
        return this.parseLiteral('false', false);
      case LOWER_N:
        return this.parseLiteral('null', null);
      default:
        if (c === MINUS || (c >= ZERO && c <= NINE)) return this.parseNumber();
        if (this.pos >= this.len) this.fail('unexpected end of input, expected a value');
        return this.fail(
          `unexpected character ${JSON.stringify(this.src[this.pos])}, expected a value`,
        );
    }
  }

  private parseLiteral<T>(word: string, value: T): T {
    if (!this.src.startsWith(word, this.pos)) this.fail(`invalid literal, expected ${word}`);
    this.pos += word.length;
    return value;
  }

  private parseObject(depth: number): Record<string, unknown> {
    if (depth > MAX_JSON_DEPTH) this.fail(`nesting is deeper than ${MAX_JSON_DEPTH} levels`);
    const src = this.src;
    const obj: Record<string, unknown> = {};
    this.pos++; // '{'
    this.skipWhitespace();
    if (src.charCodeAt(this.pos) === RBRACE) {
      this.pos++;
      return obj;
    }
    for (;;) {
      if (src.charCodeAt(this.pos) !== QUOTE) this.fail('expected a string object key');
      const keyAt = this.pos;
      const key = this.parseString();
      if (key === '__proto__') this.fail('the key "__proto__" is not allowed', keyAt);
      this.skipWhitespace();
      if (src.charCodeAt(this.pos) !== COLON) this.fail('expected ":" after an object key');
      this.pos++;
      const value = this.parseValue(depth);
      // Checked after parsing the value so the common (unique) case costs one lookup.
      if (Object.hasOwn(obj, key)) this.fail(`duplicate object key ${preview(key)}`, keyAt);
      obj[key] = value;
      this.skipWhitespace();
      const c = src.charCodeAt(this.pos);
      if (c === COMMA) {
        this.pos++;
        this.skipWhitespace();
        continue;
      }
      if (c === RBRACE) {
        this.pos++;
        return obj;
      }
      this.fail(
        this.pos >= this.len
          ? 'unexpected end of input inside an object'
          : 'expected "," or "}" in an object',
      );
    }
  }

  private parseArray(depth: number): unknown[] {
    if (depth > MAX_JSON_DEPTH) this.fail(`nesting is deeper than ${MAX_JSON_DEPTH} levels`);
    const src = this.src;
    const arr: unknown[] = [];
    this.pos++; // '['
    this.skipWhitespace();
    if (src.charCodeAt(this.pos) === RBRACKET) {
      this.pos++;
      return arr;
    }
    for (;;) {
      arr.push(this.parseValue(depth));
      this.skipWhitespace();
      const c = src.charCodeAt(this.pos);
      if (c === COMMA) {
        this.pos++;
        continue;
      }
      if (c === RBRACKET) {
        this.pos++;
        return arr;
      }
      this.fail(
        this.pos >= this.len
          ? 'unexpected end of input inside an array'
          : 'expected "," or "]" in an array',
      );
    }
  }

  private parseString(): string {
    const src = this.src;
    const len = this.len;
    const open = this.pos;
    let pos = open + 1;
    // Text is copied in runs between escapes; a string without escapes is a single slice.
    let start = pos;
    let out = '';
    for (;;) {
      if (pos >= len) this.fail('unterminated string', open);
      const c = src.charCodeAt(pos);
      if (c === QUOTE) {
        this.pos = pos + 1;
        return out === '' ? src.slice(start, pos) : out + src.slice(start, pos);
      }
      if (c === BACKSLASH) {
        out += src.slice(start, pos);
        pos = this.readEscape(pos);
        out += this.escaped;
        start = pos;
        continue;
      }
      if (c < SPACE) this.fail('unescaped control character in a string', pos);
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = src.charCodeAt(pos + 1);
        if (c >= 0xdc00 || !(next >= 0xdc00 && next <= 0xdfff))
          this.fail('lone UTF-16 surrogate in a string', pos);
        pos += 2;
        continue;
      }
      pos++;
    }
  }

  /** Text produced by the last readEscape call. */
  private escaped = '';

  /** Decodes the escape at `pos` (a backslash) into `this.escaped`; returns the position after it. */
  private readEscape(pos: number): number {
    const src = this.src;
    const c = src.charCodeAt(pos + 1);
    switch (c) {
      case QUOTE:
        this.escaped = '"';
        return pos + 2;
      case BACKSLASH:
        this.escaped = '\\';
        return pos + 2;
      case SLASH:
        this.escaped = '/';
        return pos + 2;
      case LOWER_B:
        this.escaped = '\b';
        return pos + 2;
      case LOWER_F:
        this.escaped = '\f';
        return pos + 2;
      case LOWER_N:
        this.escaped = '\n';
        return pos + 2;
      case LOWER_R:
        this.escaped = '\r';
        return pos + 2;
      case LOWER_T:
        this.escaped = '\t';
        return pos + 2;
      case LOWER_U: {
        const unit = this.readHex4(pos + 2);
        if (unit >= 0xdc00 && unit <= 0xdfff)
          this.fail('lone low surrogate escape in a string', pos);
        if (unit >= 0xd800 && unit <= 0xdbff) {
          if (src.charCodeAt(pos + 6) !== BACKSLASH || src.charCodeAt(pos + 7) !== LOWER_U) {
            this.fail('high surrogate escape not followed by a low surrogate escape', pos);
          }
          const low = this.readHex4(pos + 8);
          if (low < 0xdc00 || low > 0xdfff)
            this.fail('high surrogate escape not followed by a low surrogate escape', pos);
          this.escaped = String.fromCharCode(unit, low);
          return pos + 12;
        }
        this.escaped = String.fromCharCode(unit);
        return pos + 6;
      }
      default:
        return this.fail('invalid escape sequence in a string', pos);
    }
  }

  private readHex4(pos: number): number {
    let value = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.src.charCodeAt(pos + i);
      let digit: number;
      if (c >= 0x30 && c <= 0x39) digit = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) digit = c - 0x57;
      else if (c >= 0x41 && c <= 0x46) digit = c - 0x37;
      else return this.fail('invalid \\u escape, expected 4 hex digits', pos - 2);
      value = (value << 4) | digit;
    }
    return value;
  }

  private parseNumber(): number {
    const src = this.src;
    const start = this.pos;
    let pos = start;
    if (src.charCodeAt(pos) === MINUS) pos++;
    const intStart = pos;
    let c = src.charCodeAt(pos);
    if (c === ZERO) {
      pos++;
    } else if (c >= ONE && c <= NINE) {
      do pos++;
      while ((c = src.charCodeAt(pos)) >= ZERO && c <= NINE);
    } else {
      this.fail('invalid number, expected a digit', pos);
    }
    const intEnd = pos;
    let fracEnd = pos;
    let simple = true;
    if (src.charCodeAt(pos) === DOT) {
      simple = false;
      pos++;
      const fracStart = pos;
      while ((c = src.charCodeAt(pos)) >= ZERO && c <= NINE) pos++;
      if (pos === fracStart) this.fail('invalid number, expected a digit after "."', pos);
      fracEnd = pos;
    }
    let exponent = 0;
    c = src.charCodeAt(pos);
    if (c === LOWER_E || c === UPPER_E) {
      simple = false;
      pos++;
      const signAt = pos;
      c = src.charCodeAt(pos);
      if (c === PLUS || c === MINUS) pos++;
      const digitsAt = pos;
      while ((c = src.charCodeAt(pos)) >= ZERO && c <= NINE) pos++;
      if (pos === digitsAt) this.fail('invalid number, expected a digit in the exponent', pos);
      exponent = Number(src.slice(signAt, pos));
    }
    this.pos = pos;
    const text = src.slice(start, pos);
    const value = Number(text);
    if (simple) {
      if (!Number.isSafeInteger(value)) {
        this.fail(
          `integer ${preview(text)} is outside the safe range ±(2^53-1); send large ids as strings`,
          start,
        );
      }
      return value;
    }
    if (!Number.isFinite(value))
      this.fail(`number ${preview(text)} is too large for a double`, start);
    const literalIsInteger = this.isIntegerLiteral(intStart, intEnd, fracEnd, exponent);
    if (literalIsInteger) {
      if (!Number.isSafeInteger(value)) {
        this.fail(
          `integer ${preview(text)} is outside the safe range ±(2^53-1); send large ids as strings`,
          start,
        );
      }
    } else if (Number.isInteger(value)) {
      this.fail(
        `number ${preview(text)} loses precision as a double (it reads back as ${value})`,
        start,
      );
    }
    return value;
  }

  /**
   * Whether a number literal with a fraction or exponent denotes an integer, decided on the digits
   * (not on the double, which is what is being checked).
   */
  private isIntegerLiteral(
    intStart: number,
    intEnd: number,
    fracEnd: number,
    exponent: number,
  ): boolean {
    const src = this.src;
    const fracStart = intEnd + 1; // after '.'; past fracEnd when there is no fraction
    // Last non-zero digit, scanning the fraction first, then the integer part.
    for (let i = fracEnd - 1; i >= fracStart; i--) {
      if (src.charCodeAt(i) !== ZERO) return exponent - (i - fracStart + 1) >= 0;
    }
    for (let i = intEnd - 1; i >= intStart; i--) {
      if (src.charCodeAt(i) !== ZERO) return exponent + (intEnd - 1 - i) >= 0;
    }
    return true; // all digits zero
  }
}

/**
 * Deterministic JSON for hashing (audit rows): object keys sorted by UTF-16 code units at every
 * depth (the RFC 8785 order), arrays in order, no whitespace, numbers in ECMAScript form.
 *
 * Only plain JSON values are accepted, because anything JSON.stringify would convert (Date via
 * toJSON, Map to `{}`, NaN to `null`) would make two different inputs hash the same. Object
 * properties whose value is `undefined` are left out, as JSON.stringify does, so optional fields
 * need no special handling; `undefined` inside an array is an error (it has no JSON form).
 *
 * @throws TypeError naming the path of the first value that is not plain JSON
 */
export function canonicalJson(value: unknown): string {
  return emitCanonical(value, '$', new Set());
}

function emitCanonical(value: unknown, path: string, ancestors: Set<object>): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value))
        throw new TypeError(`canonicalJson: ${path} is ${value}, which has no JSON form`);
      return JSON.stringify(value);
    case 'object': {
      if (value === null) return 'null';
      if (ancestors.has(value))
        throw new TypeError(`canonicalJson: ${path} refers back to an enclosing value (a cycle)`);
      ancestors.add(value);
      let out: string;
      if (Array.isArray(value)) {
        const parts: string[] = [];
        for (let i = 0; i < value.length; i++) {
          if (!(i in value))
            throw new TypeError(`canonicalJson: ${path}[${i}] is a hole in a sparse array`);
          const item: unknown = value[i];
          if (item === undefined)
            throw new TypeError(
              `canonicalJson: ${path}[${i}] is undefined, which has no JSON form`,
            );
          parts.push(emitCanonical(item, `${path}[${i}]`, ancestors));
        }
        out = `[${parts.join(',')}]`;
      } else {
        const proto: unknown = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== null) {
          const name =
            (value as { constructor?: { name?: string } }).constructor?.name ??
            'an object with a custom prototype';
          throw new TypeError(
            `canonicalJson: ${path} is a ${name}, not a plain object; convert it to a JSON value first`,
          );
        }
        const obj = value as Record<string, unknown>;
        const parts: string[] = [];
        for (const key of Object.keys(obj).sort()) {
          const item = obj[key];
          if (item === undefined) continue;
          parts.push(`${JSON.stringify(key)}:${emitCanonical(item, `${path}.${key}`, ancestors)}`);
        }
        out = `{${parts.join(',')}}`;
      }
      ancestors.delete(value);
      return out;
    }
    default:
      throw new TypeError(`canonicalJson: ${path} is a ${typeof value}, which has no JSON form`);
  }
}
