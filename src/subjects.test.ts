import { describe, expect, it } from 'vitest';
import { sameSubject, subjectKey } from './subjects.ts';
import { parseWith, subjectIdentifier } from './schemas.ts';
import { AppError } from './errors.ts';

const NFC_JOSE = 'jos\u00e9';
const NFD_JOSE = 'jose\u0301';

describe('subject keys: one subject however its id is spelt', () => {
  it.each([
    ['alice', 'Alice', 'ALICE', 'aLiCe'],
    ['CORP\\alice', 'corp\\ALICE', 'Corp\\Alice'],
    ['alice@corp.example', 'Alice@CORP.example'],
    ['ws-042.corp.example', 'WS-042.CORP.EXAMPLE'],
    [NFC_JOSE, NFD_JOSE, 'JOS\u00c9', 'JOSE\u0301'],
    // ß and capital ẞ fold to ss (full case folding), ligatures to their letters
    ['stra\u00dfe', 'STRASSE', 'strasse', 'STRA\u1e9eE'],
    ['\ufb01le', 'file', 'FILE'],
    // Greek: capital Σ lowercases to final ς at the end of a word; ς and σ fold to σ
    ['\u039f\u0394\u039f\u03a3', '\u03bf\u03b4\u03bf\u03c2', '\u03bf\u03b4\u03bf\u03c3'],
    // Turkish capital İ folds to i + combining dot above, the same as its decomposed spelling
    ['\u0130stanbul', 'i\u0307stanbul', 'I\u0307STANBUL'],
    // Cherokee folds to its uppercase: either case is one subject
    ['\u13a0\u13a1', '\uab70\uab71'],
    // A Greek letter with iota subscript; the folded form recomposes under NFC
    ['\u1fb3', '\u1fbc', '\u03b1\u03b9', '\u0391\u0399'],
    ['\u0390', '\u03aa\u0301', '\u03b9\u0308\u0301'],
  ])('%s is one subject with its other spellings', (...spellings) => {
    const keys = new Set(spellings.map(subjectKey));
    expect(keys.size, JSON.stringify([...keys])).toBe(1);
    for (const s of spellings) expect(sameSubject(spellings[0]!, s)).toBe(true);
  });

  it.each([
    ['alice', 'bob'],
    // Turkish dotless ı and dotted İ are never merged with the Latin I and i, whatever the locale
    ['\u0131stanbul', 'istanbul'],
    ['\u0130stanbul', 'istanbul'],
    ['\u0130stanbul', 'Istanbul'],
    ['\u0131', 'I'],
    // NFC, not NFKC: compatibility forms are other subjects
    ['\uff41\uff4c\uff49\uff43\uff45', 'alice'],
    ['alice', 'alice2'],
  ])('%s and %s stay two subjects', (a, b) => {
    expect(subjectKey(a)).not.toBe(subjectKey(b));
    expect(sameSubject(a, b)).toBe(false);
  });

  it('gives the documented keys: lowercase ASCII, NFC, full case fold', () => {
    expect(subjectKey('CORP\\Alice')).toBe('corp\\alice');
    expect(subjectKey(NFD_JOSE)).toBe(NFC_JOSE);
    expect(subjectKey('STRASSE')).toBe('strasse');
    expect(subjectKey('Stra\u00dfe')).toBe('strasse');
    expect(subjectKey('\u039f\u0394\u039f\u03a3')).toBe('\u03bf\u03b4\u03bf\u03c3');
    expect(subjectKey('\u0130')).toBe('i\u0307');
    expect(subjectKey('\u0131')).toBe('\u0131');
  });

  it('does not depend on the process locale (toLowerCase, never toLocaleLowerCase)', () => {
    // A Turkish locale would lowercase I to dotless ı; the key must not.
    expect('I'.toLocaleLowerCase('tr')).toBe('\u0131');
    expect(subjectKey('I')).toBe('i');
    expect(subjectKey('\u0130')).toBe('i\u0307');
  });

  it('is idempotent and agrees with the runtime case mappings for every code point (but dotless ı)', () => {
    const disagreements: string[] = [];
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      const c = String.fromCodePoint(cp);
      const k = subjectKey(c);
      if (subjectKey(k) !== k) disagreements.push(`U+${cp.toString(16)} not idempotent`);
      if (subjectKey(c.toUpperCase()) !== k)
        disagreements.push(`U+${cp.toString(16)} vs its uppercase`);
      if (subjectKey(c.toLowerCase()) !== k)
        disagreements.push(`U+${cp.toString(16)} vs its lowercase`);
    }
    // ı uppercases to I, but Unicode case folding keeps it apart from i (no Turkic mappings).
    expect(disagreements).toEqual(['U+131 vs its uppercase']);
  });
});

describe('subject ids at the edge', () => {
  it.each([
    ['a variation selector', 'alice\ufe0f'],
    ['a zero-width joiner', 'ali\u200dce'],
    ['a soft hyphen', 'ali\u00adce'],
    ['Hangul fillers only', '\u3164\u3164'],
    ['a lone surrogate', 'alice\ud800'],
    ['an unassigned code point', 'alice\u{e0fff}'],
    ['a space', 'alice smith'],
    ['whitespace only', '\u2003'],
    ['a control character', 'alice\u0007'],
    ['nothing', ''],
  ])('refuses an id with %s', (_what, id) => {
    expect(() => parseWith(subjectIdentifier, id)).toThrow(AppError);
  });

  it.each([
    ['alice'],
    [NFD_JOSE],
    ['CORP\\alice'],
    ['\u0130stanbul'],
    ['\u5c71\u7530'],
    ['user_123@corp.example'],
  ])('accepts %s', (id) => {
    expect(parseWith(subjectIdentifier, id)).toBe(id);
  });
});
