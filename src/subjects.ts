/**
 * Subject identity (docs/design.md "Subjects"): one person or machine is one subject however its id is
 * spelled. Ids are compared by their canonical key, NFC(fold(NFC(id))), where fold is Unicode
 * full case folding (CaseFolding.txt statuses C and F, as Python's str.casefold and ICU's default
 * u_strFoldCase): locale-independent, never the Turkic (T) mappings. So:
 *
 * - `alice`, `Alice`, `ALICE` are one subject, and so are `CORP\alice` and `corp\ALICE`;
 * - `josé` typed precomposed (U+00E9) or decomposed (e + U+0301) is one subject;
 * - `straße`, `STRASSE` and `strasse` are one subject (ß and ẞ fold to ss), and `ﬁle` is `file`;
 * - Greek `ΟΔΟΣ`, `οδος` and `οδοσ` are one subject (final ς folds to σ);
 * - `İ` (U+0130) folds to i + U+0307, so `İ` matches `i̇` but neither `I` nor `i`, and the dotless
 *   `ı` stays itself: Turkish I's are never merged with the Latin ones, whatever the locale;
 * - compatibility forms are not merged (NFC, not NFKC): `ａｌｉｃｅ` (full-width) is another subject.
 *
 * The id as first seen is kept for display; the key is what every lookup, uniqueness rule and count
 * uses. Unicode full case folding is the lowercase mapping plus the exceptions below, so the fold is
 * String.prototype.toLowerCase (locale-independent by ECMA-262, with the Unicode data of the
 * running Node) and then this table. The table is CaseFolding.txt's entries for characters that
 * are their own lowercase but fold to something else; subjects.test.ts checks it against the
 * runtime's case mappings for every code point.
 */

// 'XXXX:YYYY ZZZZ' = the code point XXXX folds to YYYY ZZZZ. Cherokee is added below as ranges.
const TABLE = [
  '00B5:03BC, 00DF:0073 0073, 0149:02BC 006E, 017F:0073, 01F0:006A 030C, 0345:03B9',
  '0390:03B9 0308 0301, 03B0:03C5 0308 0301, 03C2:03C3, 03D0:03B2, 03D1:03B8, 03D5:03C6',
  '03D6:03C0, 03F0:03BA, 03F1:03C1, 03F5:03B5, 0587:0565 0582, 1C80:0432',
  '1C81:0434, 1C82:043E, 1C83:0441, 1C84:0442, 1C85:0442, 1C86:044A',
  '1C87:0463, 1C88:A64B, 1E96:0068 0331, 1E97:0074 0308, 1E98:0077 030A, 1E99:0079 030A',
  '1E9A:0061 02BE, 1E9B:1E61, 1F50:03C5 0313, 1F52:03C5 0313 0300, 1F54:03C5 0313 0301, 1F56:03C5 0313 0342',
  '1F80:1F00 03B9, 1F81:1F01 03B9, 1F82:1F02 03B9, 1F83:1F03 03B9, 1F84:1F04 03B9, 1F85:1F05 03B9',
  '1F86:1F06 03B9, 1F87:1F07 03B9, 1F90:1F20 03B9, 1F91:1F21 03B9, 1F92:1F22 03B9, 1F93:1F23 03B9',
  '1F94:1F24 03B9, 1F95:1F25 03B9, 1F96:1F26 03B9, 1F97:1F27 03B9, 1FA0:1F60 03B9, 1FA1:1F61 03B9',
  '1FA2:1F62 03B9, 1FA3:1F63 03B9, 1FA4:1F64 03B9, 1FA5:1F65 03B9, 1FA6:1F66 03B9, 1FA7:1F67 03B9',
  '1FB2:1F70 03B9, 1FB3:03B1 03B9, 1FB4:03AC 03B9, 1FB6:03B1 0342, 1FB7:03B1 0342 03B9, 1FBE:03B9',
  '1FC2:1F74 03B9, 1FC3:03B7 03B9, 1FC4:03AE 03B9, 1FC6:03B7 0342, 1FC7:03B7 0342 03B9, 1FD2:03B9 0308 0300',
  '1FD3:03B9 0308 0301, 1FD6:03B9 0342, 1FD7:03B9 0308 0342, 1FE2:03C5 0308 0300, 1FE3:03C5 0308 0301, 1FE4:03C1 0313',
  '1FE6:03C5 0342, 1FE7:03C5 0308 0342, 1FF2:1F7C 03B9, 1FF3:03C9 03B9, 1FF4:03CE 03B9, 1FF6:03C9 0342',
  '1FF7:03C9 0342 03B9, FB00:0066 0066, FB01:0066 0069, FB02:0066 006C, FB03:0066 0066 0069, FB04:0066 0066 006C',
  'FB05:0073 0074, FB06:0073 0074, FB13:0574 0576, FB14:0574 0565, FB15:0574 056B, FB16:057E 0576',
  'FB17:0574 056D',
].join(', ');

const FOLD = new Map<string, string>();
for (const entry of TABLE.split(', ')) {
  const [from, to] = entry.split(':') as [string, string];
  FOLD.set(
    String.fromCodePoint(parseInt(from, 16)),
    String.fromCodePoint(...to.split(' ').map((h) => parseInt(h, 16))),
  );
}
// Cherokee folds to its uppercase (encoded first): the lowercase letters U+AB70..U+ABBF and
// U+13F8..U+13FD map to U+13A0..U+13EF and U+13F0..U+13F5.
for (let cp = 0xab70; cp <= 0xabbf; cp++)
  FOLD.set(String.fromCodePoint(cp), String.fromCodePoint(cp - 0xab70 + 0x13a0));
for (let cp = 0x13f8; cp <= 0x13fd; cp++)
  FOLD.set(String.fromCodePoint(cp), String.fromCodePoint(cp - 8));

const SPECIAL = new RegExp(`[${[...FOLD.keys()].join('')}]`, 'gu');

/**
 * The key of a printable ASCII id (its own NFC, folded exactly by toLowerCase), or null for any
 * other. One pass over the id; an id already in lowercase is returned as it is, not copied.
 */
function asciiKey(id: string): string | null {
  let upper = false;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c > 0x7e || c < 0x20) return null;
    if (c <= 0x5a && c >= 0x41) upper = true;
  }
  return upper ? id.toLowerCase() : id;
}

/**
 * The canonical key of a subject id: NFC, then Unicode full case folding, then NFC again (folding
 * may decompose, e.g. U+0390 ΐ). Pure and cheap (the grant path computes it once per request):
 * for an ASCII id one pass, and a copy only when it has capitals. Idempotent:
 * `subjectKey(subjectKey(x)) === subjectKey(x)`.
 */
export function subjectKey(id: string): string {
  const ascii = asciiKey(id);
  if (ascii !== null) return ascii;
  const lower = id.normalize('NFC').toLowerCase();
  SPECIAL.lastIndex = 0;
  const folded = lower.replace(SPECIAL, (ch) => FOLD.get(ch)!);
  return folded.normalize('NFC');
}

/** Do two subject ids name the same subject? */
export function sameSubject(a: string, b: string): boolean {
  return a === b || subjectKey(a) === subjectKey(b);
}
