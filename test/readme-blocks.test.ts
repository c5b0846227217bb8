// The reader of the README's blocks (test/readme-blocks.ts), on small READMEs: the README test is
// only as strict as this, so each way it can refuse is shown to refuse.
import { describe, expect, it } from 'vitest';
import {
  commandsOf,
  mismatches,
  parseExpectation,
  printsMatch,
  readmeBlocks,
  segment,
  sessionScript,
} from './readme-blocks.ts';

const FENCE = '```';
const md = (...lines: string[]) => lines.join('\n');

describe('readmeBlocks', () => {
  it('reads fences in order with their language, line and the marker before them', () => {
    const blocks = readmeBlocks(
      md(
        '# t',
        '<!-- readme-test: skip (runs on the host) -->',
        `${FENCE}sh`,
        'rm -rf /',
        FENCE,
        '<!-- readme-test: save as a.mjs -->',
        `${FENCE}js`,
        'console.log(1)',
        FENCE,
        `  ${FENCE}`,
        '  note',
        `  ${FENCE}`,
      ),
    );
    expect(blocks).toEqual([
      {
        lang: 'sh',
        text: 'rm -rf /',
        line: 3,
        marker: { kind: 'skip', reason: 'runs on the host' },
      },
      { lang: 'js', text: 'console.log(1)', line: 7, marker: { kind: 'save', file: 'a.mjs' } },
      { lang: '', text: 'note', line: 10, marker: undefined },
    ]);
  });

  it('refuses an unknown marker, a marker away from a fence, and an open fence', () => {
    expect(() =>
      readmeBlocks(md('<!-- readme-test: ignore -->', `${FENCE}sh`, 'x', FENCE)),
    ).toThrow(/unknown readme-test marker/);
    expect(() =>
      readmeBlocks(md('<!-- readme-test: skip (x) -->', 'prose', `${FENCE}sh`, 'x', FENCE)),
    ).toThrow(/must precede a fence/);
    expect(() => readmeBlocks(md(`${FENCE}sh`, 'x'))).toThrow(/never closes/);
  });
});

describe('answer comments', () => {
  it('parses status and fields, status and code, prints, and leaves other comments alone', () => {
    expect(parseExpectation(' 201 {"a":"x…","n":[1]}  (a note)')).toMatchObject({
      kind: 'http',
      status: 201,
      fields: { a: 'x…', n: [1] },
    });
    expect(parseExpectation(' 409 conflict   (why)')).toMatchObject({
      status: 409,
      code: 'conflict',
    });
    expect(parseExpectation(' prints: leased lease_…')).toMatchObject({
      kind: 'prints',
      pattern: 'leased lease_…',
    });
    expect(parseExpectation(' a per_user entitlement for the examples')).toBeUndefined();
    expect(() => parseExpectation(' 201 {"a":…}')).toThrow(/not JSON/);
    expect(() => parseExpectation(' 404 no entitlement ent_…')).toThrow(/neither/);
  });

  it('joins continued and quoted lines into one command and gives it the comment under it', () => {
    const block = {
      lang: 'sh',
      line: 10,
      marker: undefined,
      text: md(
        '# a comment first',
        'curl -X POST $BASE/x -d \'{ "a": 1,',
        '  "b": 2 }\'',
        '# 201 {"a":1}',
        'X=$(curl -s $BASE/y \\',
        "  | node -pe 'JSON.parse(fs.readFileSync(0)).id')   # 200",
        'echo "#not a comment" # prints: #not…',
      ),
    };
    expect(commandsOf(block)).toEqual([
      {
        text: 'curl -X POST $BASE/x -d \'{ "a": 1,\n  "b": 2 }\'',
        line: 12,
        expect: { kind: 'http', status: 201, fields: { a: 1 }, source: '201 {"a":1}' },
      },
      {
        text: "X=$(curl -s $BASE/y \\\n  | node -pe 'JSON.parse(fs.readFileSync(0)).id')   # 200",
        line: 15,
        expect: { kind: 'http', status: 200, source: '200' },
      },
      {
        text: 'echo "#not a comment" # prints: #not…',
        line: 17,
        expect: { kind: 'prints', pattern: '#not…', source: 'prints: #not…' },
      },
    ]);
  });

  it('matches the fields shown, … as anything, and says where an answer differs', () => {
    const answer = { lease_id: 'lease_abc', features: ['a', 'b'], n: 3, extra: true };
    expect(mismatches({ lease_id: 'lease_…', features: ['a', 'b'], n: 3 }, answer)).toEqual([]);
    expect(mismatches({ lease_id: 'seat_…' }, answer)).toEqual([
      '$.lease_id: "lease_abc" is not "seat_…"',
    ]);
    expect(mismatches({ features: ['a'] }, answer)).toEqual([
      '$.features: ["a","b"] is not 1 items',
    ]);
    expect(mismatches({ n: 4, missing: null }, answer)).toEqual([
      '$.n: 3 is not 4',
      '$.missing: undefined is not null',
    ]);
    expect(printsMatch('leased lease_… until …Z', 'x\nleased lease_1 until 2026-01-01Z\n')).toBe(
      true,
    );
    expect(printsMatch('leased lease_…', 'not leased lease_1')).toBe(false);
  });
});

describe('sessionScript', () => {
  it('leaves skipped blocks out, saves js, rewrites the port, and marks off checked commands', () => {
    const blocks = readmeBlocks(
      md(
        '<!-- readme-test: skip (forever) -->',
        `${FENCE}sh`,
        'make run',
        FENCE,
        '<!-- readme-test: save as v.mjs -->',
        `${FENCE}js`,
        "fetch('http://127.0.0.1:8080/')",
        FENCE,
        `${FENCE}sh`,
        'node v.mjs',
        'curl http://localhost:8080/healthz',
        '# 200 {"status":"ok"}',
        FENCE,
      ),
    );
    const { script, checked } = sessionScript(blocks, 4321);
    expect(script).not.toContain('make run');
    expect(script).toContain("cat > 'v.mjs' <<'README_TEST_EOF'\nfetch('http://127.0.0.1:4321/')");
    expect(script).toContain('curl http://localhost:4321/healthz');
    expect(checked.map((c) => c.command.line)).toEqual([11]);
    expect(script).toMatch(/@@begin 0.*\ncurl http:\/\/localhost:4321\/healthz\n.*@@end 0/);
    expect(segment('x\n@@begin 0\n{"status":"ok"}\n@@end 0\n', 0)).toBe('{"status":"ok"}');
    expect(segment('no markers', 0)).toBe('');
  });
});
