import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, StrictJsonError, canonicalJson, parseStrictJson } from './strict-json.ts';

/**
 * Expects parseStrictJson to refuse `text` with a StrictJsonError whose message holds each
 * fragment, and whose offset and reason are the ones the message states.
 */
function expectBadClaims(text: string, ...fragments: string[]): void {
  let caught: unknown;
  try {
    parseStrictJson(text);
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${JSON.stringify(text)} to be rejected`).toBeInstanceOf(StrictJsonError);
  const err = caught as StrictJsonError;
  for (const fragment of fragments) expect(err.message).toContain(fragment);
  expect(err.offset).toBeGreaterThanOrEqual(0);
  expect(err.offset).toBeLessThanOrEqual(text.length);
  expect(err.message).toBe(`invalid JSON at offset ${err.offset}: ${err.reason}`);
  expect(err.where).toBe(`at offset ${err.offset}: ${err.reason}`);
}

describe('parseStrictJson accepts what JSON.parse accepts and agrees with it', () => {
  const valid = [
    '{}',
    '[]',
    'null',
    'true',
    'false',
    '0',
    '-0',
    '1.5',
    '-12.25e-3',
    '2.5E+2',
    '1e2',
    '9007199254740991',
    '-9007199254740991',
    '"plain"',
    '"esc \\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\ud83d\\ude00 end"',
    '"raw é 😀 ✓"',
    ' \t\r\n{ "a" : [ 1 , 2 , { "b" : null } ] , "c" : "d" } \n',
    '{"typ":"bp.lease/1","features":["a","b"],"nested":{"x":{"y":[[],{}]}}}',
    '{"constructor":1,"toString":2,"hasOwnProperty":3}',
    '"\\u0000"',
    '0.1',
    '1.25e-300',
  ];
  it.each(valid)('parses %s like JSON.parse', (text) => {
    expect(parseStrictJson(text)).toStrictEqual(JSON.parse(text));
  });

  it('parses typical 500-byte lease claims like JSON.parse (its speed is a make bench figure)', () => {
    const text = JSON.stringify({
      typ: 'bp.lease/1',
      iss: 'srv_01HZX3K9V6Q2N8M4T7R5W1Y0AB',
      sub: 'user:user_01HZX3K9V6Q2N8M4T7R5W1Y0AB',
      aud: 'prod_bigpicture_desktop',
      jti: 'lease_01HZX3K9V6Q2N8M4T7R5W1Y0AB',
      tenant_id: 'ten_01HZX3K9V6Q2N8M4T7R5W1Y0AB',
      entitlement_id: 'ent_01HZX3K9V6Q2N8M4T7R5W1Y0AB',
      policy: 'floating',
      features: ['export.pdf', 'export.svg', 'collab.realtime', 'ai.assist', 'storage.unlimited'],
      iat: '2024-01-15T11:30:00Z',
      nbf: '2024-01-15T11:30:00Z',
      exp: '2024-01-15T12:30:00Z',
      seats: 25,
      ratio: 0.75,
      note: 'caf\u00e9 \u2713',
    });
    expect(text.length).toBeGreaterThan(400);
    expect(parseStrictJson(text)).toStrictEqual(JSON.parse(text));
  });

  it('creates ordinary own properties for keys that shadow Object.prototype', () => {
    const value = parseStrictJson('{"constructor":1}') as Record<string, unknown>;
    expect(Object.hasOwn(value, 'constructor')).toBe(true);
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
  });
});

describe('parseStrictJson rejects', () => {
  it('duplicate keys at the top level', () => {
    expectBadClaims('{"sub":"user:a","sub":"user:b"}', 'duplicate object key "sub"', 'offset 16');
  });

  it('with the offset where the fault starts and the reason, as fields', () => {
    const dup = '{"sub":"user:a","sub":"user:b"}';
    expect(() => parseStrictJson(dup)).toThrow(
      expect.objectContaining({ offset: 16, reason: 'duplicate object key "sub"' }),
    );
    expect(() => parseStrictJson('[1, 9007199254740993]')).toThrow(
      expect.objectContaining({
        offset: 4,
        reason: expect.stringContaining('outside the safe range'),
      }),
    );
  });

  it('duplicate keys in nested objects and objects inside arrays', () => {
    expectBadClaims('{"a":{"b":1,"b":2}}', 'duplicate object key "b"');
    expectBadClaims('[{"x":1},{"y":1,"y":1}]', 'duplicate object key "y"');
  });

  it('duplicate keys that differ only in escaping', () => {
    expectBadClaims('{"aud":1,"\\u0061ud":2}', 'duplicate object key "aud"');
  });

  it('the key __proto__, escaped or not, at any depth', () => {
    expectBadClaims('{"__proto__":{"admin":true}}', '"__proto__" is not allowed');
    expectBadClaims('{"a":[{"__proto__":1}]}', '"__proto__" is not allowed');
    expectBadClaims('{"\\u005f_proto__":1}', '"__proto__" is not allowed');
  });

  it('integers beyond the safe range, which JSON.parse silently rounds', () => {
    expect(JSON.parse('9007199254740993')).toBe(9007199254740992);
    expectBadClaims('9007199254740993', 'outside the safe range');
    expectBadClaims('{"n":9007199254740992}', 'outside the safe range');
    expectBadClaims('-9007199254740992', 'outside the safe range');
    expectBadClaims('1e16', 'outside the safe range');
    expectBadClaims('9007199254740993.0', 'outside the safe range');
  });

  it('numbers that change from fraction to integer as doubles (precision loss)', () => {
    expectBadClaims('1.00000000000000000001', 'loses precision');
    expectBadClaims('4503599627370496.5', 'loses precision');
    expectBadClaims('1e-400', 'loses precision');
  });

  it('numbers too large for a double', () => {
    expectBadClaims('1e400', 'too large');
    expectBadClaims('-1.5e999', 'too large');
  });

  it('numbers outside the JSON grammar', () => {
    expectBadClaims('01', 'unexpected data after');
    expectBadClaims('+1', 'unexpected character "+"');
    expectBadClaims('1.', 'after "."');
    expectBadClaims('.5', 'unexpected character "."');
    expectBadClaims('1e', 'in the exponent');
    expectBadClaims('-', 'expected a digit');
    expectBadClaims('NaN', 'unexpected character');
    expectBadClaims('Infinity', 'unexpected character');
  });

  it('syntax JSON.parse also rejects', () => {
    expectBadClaims('', 'unexpected end of input');
    expectBadClaims('{"a":1,}', 'expected a string object key');
    expectBadClaims('[1,]', 'unexpected character "]"');
    expectBadClaims('{"a" 1}', 'expected ":"');
    expectBadClaims('{"a":1', 'end of input inside an object');
    expectBadClaims('[1', 'end of input inside an array');
    expectBadClaims('{a:1}', 'expected a string object key');
    expectBadClaims("'x'", 'unexpected character');
    expectBadClaims('tru', 'expected true');
    expectBadClaims('nul', 'expected null');
    expectBadClaims('{} {}', 'unexpected data after');
    expectBadClaims('"abc', 'unterminated string');
    expectBadClaims('"a\\x"', 'invalid escape');
    expectBadClaims('"\\u12g4"', 'expected 4 hex digits');
    expectBadClaims('"tab\there"', 'unescaped control character');
    expectBadClaims('\u00a0{}', 'unexpected character');
  });

  it('lone surrogates, escaped or raw', () => {
    expectBadClaims('"\\ud800"', 'high surrogate');
    expectBadClaims('"\\ud800\\u0041"', 'high surrogate');
    expectBadClaims('"\\udc00"', 'lone low surrogate');
    expectBadClaims('"\ud800x"', 'lone UTF-16 surrogate');
    expectBadClaims('"\udc00"', 'lone UTF-16 surrogate');
  });

  it(`nesting deeper than ${MAX_JSON_DEPTH} levels, with a StrictJsonError rather than a stack overflow`, () => {
    expect(parseStrictJson('['.repeat(MAX_JSON_DEPTH) + ']'.repeat(MAX_JSON_DEPTH))).toBeInstanceOf(
      Array,
    );
    expectBadClaims(
      '['.repeat(MAX_JSON_DEPTH + 1) + ']'.repeat(MAX_JSON_DEPTH + 1),
      'nesting is deeper',
    );
    expectBadClaims('{"a":'.repeat(100_000), 'nesting is deeper');
  });
});

describe('canonicalJson', () => {
  it('sorts object keys at every depth and keeps array order', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, 1, { z: 1, y: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[3,1,{"y":2,"z":1}]},"b":1}',
    );
  });

  it('gives the same text for objects that differ only in key order', () => {
    expect(canonicalJson({ x: 1, y: [true, 'a'] })).toBe(canonicalJson({ y: [true, 'a'], x: 1 }));
  });

  it('sorts by UTF-16 code units as RFC 8785 does', () => {
    expect(canonicalJson({ '\u00e9': 1, z: 2, Z: 3, '\ud83d\ude00': 4, '\u20ac': 5 })).toBe(
      '{"Z":3,"z":2,"é":1,"€":5,"😀":4}',
    );
  });

  it('writes strings and numbers as JSON.stringify does', () => {
    expect(canonicalJson(['a"b\n', 1e21, 0.1, -0, 5])).toBe('["a\\"b\\n",1e+21,0.1,0,5]');
  });

  it('leaves out object properties that are undefined', () => {
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
  });

  it('accepts null-prototype objects', () => {
    const obj = Object.create(null) as Record<string, unknown>;
    obj.k = 'v';
    expect(canonicalJson(obj)).toBe('{"k":"v"}');
  });

  it('round-trips through parseStrictJson', () => {
    const value = { z: [1, 2, { q: 'x' }], a: 'é', m: false };
    expect(parseStrictJson(canonicalJson(value))).toStrictEqual(value);
  });

  it('rejects values that are not plain JSON, naming the path', () => {
    expect(() => canonicalJson({ at: new Date(0) })).toThrow(
      /\$\.at is a Date, not a plain object/,
    );
    expect(() => canonicalJson({ m: new Map() })).toThrow(/\$\.m is a Map/);
    expect(() => canonicalJson({ n: Number.NaN })).toThrow(/\$\.n is NaN/);
    expect(() => canonicalJson([1, Infinity])).toThrow(/\$\[1\] is Infinity/);
    expect(() => canonicalJson({ b: 1n })).toThrow(/\$\.b is a bigint/);
    expect(() => canonicalJson({ f: () => 1 })).toThrow(/\$\.f is a function/);
    expect(() => canonicalJson([undefined])).toThrow(/\$\[0\] is undefined/);
    expect(() => canonicalJson(undefined)).toThrow(TypeError);
    // eslint-disable-next-line no-sparse-arrays
    expect(() => canonicalJson([1, , 3])).toThrow(/hole in a sparse array/);
  });

  it('rejects cycles instead of overflowing the stack', () => {
    const a: Record<string, unknown> = { x: 1 };
    a.self = { back: a };
    expect(() => canonicalJson(a)).toThrow(/\$\.self\.back refers back/);
  });

  it('allows the same object twice when it is not a cycle', () => {
    const shared = { k: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"k":1},"b":{"k":1}}');
  });
});
