// The house rules that a type checker cannot see. Exits 1 with file:line for each breach.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (/\.(ts|tsx|mjs)$/.test(name)) files.push(relative(root, p));
  }
})(join(root, 'src'));
for (const d of ['test', 'scripts', 'bench']) {
  try {
    (function walk(dir) {
      for (const name of readdirSync(dir)) {
        const p = join(dir, name);
        if (statSync(p).isDirectory()) {
          if (name !== 'fixtures' && name !== 'results') walk(p);
        } else if (/\.(ts|mjs)$/.test(name)) files.push(relative(root, p));
      }
    })(join(root, d));
  } catch {}
}

// Faces that still use the raw handle of a Store (see the rule below); shrink this list, never grow it.
const rules = [
  {
    name: 'time comes from the injected clock',
    applies: (f) => f.startsWith('src/domain/') && !f.endsWith('.test.ts'),
    bad: /\bDate\.now\(\)|new Date\(\)/,
  },
  {
    name: 'SQL lives in src/storage only',
    applies: (f) =>
      f.startsWith('src/') && !f.startsWith('src/storage/') && !f.endsWith('.test.ts'),
    bad: /\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b/,
  },
  {
    name: 'the domain imports neither hono nor better-sqlite3',
    applies: (f) => f.startsWith('src/domain/'),
    bad: /from '(hono|better-sqlite3)/,
  },
  {
    // Node's recursive mkdir loops forever where the kernel answers ENOENT under a parent that
    // exists (/proc): folders are made by makeDirs (src/fs-dirs.ts), one at a time.
    name: 'folders are made with makeDirs (src/fs-dirs.ts), never a recursive mkdir',
    applies: (f) => f.startsWith('src/') && f !== 'src/fs-dirs.ts' && !f.endsWith('.test.ts'),
    bad: /mkdir(Sync)?\([^)]*recursive: true/,
  },
  {
    // The admin console's modules bring the DOM's types (/// <reference lib="dom" />), and a
    // reference applies to the whole program: the server's code must not lean on them.
    name: 'browser globals (document, localStorage, HTMLElement…) only in src/admin/console/',
    applies: (f) =>
      f.startsWith('src/') && !f.startsWith('src/admin/console/') && !f.endsWith('.test.ts'),
    bad: /\b(document|localStorage|sessionStorage|navigator)\.|\bHTML\w*Element\b|\bwindow\.(location|document|addEventListener)/,
  },
  {
    // Storage is reached through the Store (its repositories, migration notes, integrity checks,
    // backups, upkeep), never around it.
    name: 'outside src/storage, no raw database handle (store.db) and no better-sqlite3',
    applies: (f) =>
      f.startsWith('src/') && !f.startsWith('src/storage/') && !f.endsWith('.test.ts'),
    bad: /\bstore\.db\b|from 'better-sqlite3'|require\('better-sqlite3'\)/,
  },
  {
    // The domain owns its types and the store seam (src/domain/store.ts); storage implements
    // them, the faces parse (schemas.ts) and answer (http/): the arrows point into the domain.
    // Its tests may open a real store.
    name: 'the domain imports nothing from src/storage/, src/schemas.ts or src/http/',
    applies: (f) => f.startsWith('src/domain/') && !f.endsWith('.test.ts'),
    bad: /(from|import\() *'\.\.\/(storage\/|schemas\.ts|http\/)/,
  },
  {
    name: 'no console.log in src (use the logger or the CLI io)',
    applies: (f) => f.startsWith('src/') && !f.endsWith('.test.ts'),
    bad: /console\.log\(/,
  },
  {
    name: 'no focused or skipped tests',
    applies: (f) => f.endsWith('.test.ts'),
    bad: /\b(it|test|describe)\.(only|skip)\(/,
  },
  {
    name: 'no vi.mock of our own modules',
    applies: (f) => f.endsWith('.test.ts'),
    bad: /vi\.mock\(/,
  },
];

let failures = 0;
for (const f of files) {
  const lines = readFileSync(join(root, f), 'utf8').split('\n');
  for (const rule of rules) {
    if (!rule.applies(f)) continue;
    lines.forEach((line, i) => {
      if (/^\s*(\/\/|\*)/.test(line)) return;
      if (rule.bad.test(line)) {
        console.error(`${f}:${i + 1}: ${rule.name}: ${line.trim()}`);
        failures++;
      }
    });
  }
}
if (failures) process.exit(1);
console.log(`lint: ${files.length} files, no breaches`);
