// The duplicate gate of `make check`: jscpd with .jscpd.json (src, test, scripts, bench and the
// TypeScript SDK's sources; a block counts from 6 lines and 50 tokens) finds copied blocks, and
// this script fails when a pair of files holds more of them than scripts/duplicates-accepted.json
// accepts for that pair, each acceptance with its reason. Counting per pair of files, not per line
// range, keeps the baseline stable while the files around an accepted block change; a new copy
// anywhere else fails. Exits 1 with each unaccepted block (both places and its first lines).
//
//   node scripts/duplicates.mjs
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const ACCEPTED_FILE = 'scripts/duplicates-accepted.json';
// jscpd's ESM build fails to load one of its own dependencies (colors/safe); its CommonJS build works.
const { jscpd } = createRequire(import.meta.url)('jscpd');

/** "a <-> b" with the two paths in a fixed order, so a pair reads the same from either side. */
const pairKey = (a, b) => (a < b ? `${a} <-> ${b}` : `${b} <-> ${a}`);

/** The accepted pairs as a Map of pairKey to { blocks, why }; throws on a malformed entry. */
function loadAccepted() {
  const { accepted } = JSON.parse(readFileSync(`${root}${ACCEPTED_FILE}`, 'utf8'));
  if (!Array.isArray(accepted)) throw new Error(`${ACCEPTED_FILE}: "accepted" must be an array`);
  const out = new Map();
  for (const [i, e] of accepted.entries()) {
    const ok =
      Array.isArray(e.files) &&
      e.files.length === 2 &&
      e.files.every((f) => typeof f === 'string' && f !== '') &&
      Number.isInteger(e.blocks) &&
      e.blocks >= 1 &&
      typeof e.why === 'string' &&
      e.why.trim().length >= 20;
    if (!ok)
      throw new Error(
        `${ACCEPTED_FILE}: entry ${i} needs "files" (two paths), "blocks" (a whole number >= 1) and "why" (a reason, 20 characters or more)`,
      );
    const key = pairKey(e.files[0], e.files[1]);
    if (out.has(key)) throw new Error(`${ACCEPTED_FILE}: ${key} is listed twice`);
    out.set(key, { blocks: e.blocks, why: e.why });
  }
  return out;
}

const accepted = loadAccepted();
process.chdir(root); // .jscpd.json's paths are relative to the project
const clones = await jscpd(['node', 'jscpd', '--config', '.jscpd.json']);

const where = (d) => `${relative(root, d.sourceId)}:${d.start.line}-${d.end.line}`;
const byPair = new Map();
for (const c of clones) {
  const key = pairKey(
    relative(root, c.duplicationA.sourceId),
    relative(root, c.duplicationB.sourceId),
  );
  if (!byPair.has(key)) byPair.set(key, []);
  byPair.get(key).push(c);
}

let failed = 0;
for (const [key, found] of byPair) {
  const allowed = accepted.get(key)?.blocks ?? 0;
  if (found.length <= allowed) continue;
  failed += found.length - allowed;
  console.error(
    `duplicates: ${key}: ${found.length} duplicate block(s), ${allowed} accepted in ${ACCEPTED_FILE}`,
  );
  for (const c of found) {
    const first = (c.duplicationA.fragment ?? '').trim().split('\n').slice(0, 3).join('\n      ');
    console.error(`  ${where(c.duplicationA)} = ${where(c.duplicationB)}\n      ${first}`);
  }
}
for (const [key, { blocks }] of accepted) {
  const n = byPair.get(key)?.length ?? 0;
  if (n < blocks)
    console.log(
      `duplicates: ${key}: ${blocks} accepted, ${n} found: lower or remove its entry in ${ACCEPTED_FILE}`,
    );
}
if (failed) {
  console.error(
    `duplicates: ${failed} block(s) beyond the accepted baseline. Share the code (a helper, a module), or, when a copy must stay, accept it in ${ACCEPTED_FILE} with the reason.`,
  );
  process.exit(1);
}
const total = [...accepted.values()].reduce((s, e) => s + e.blocks, 0);
console.log(`duplicates: ${clones.length} block(s) found, all within the ${total} accepted`);
