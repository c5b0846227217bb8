// Builds the SDK into dist/: index.js (ESM) and index.cjs (CommonJS) for Node 20 and later, with the
// token verifier and BLAKE2b bundled in (no runtime dependency), and type declarations.
//   node clients/typescript/build.mjs     (make sdk does it; the test setup too)
// Uses the repository's esbuild and tsc (npm ci at the root).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));

export async function buildSdk() {
  rmSync(`${here}dist`, { recursive: true, force: true });
  mkdirSync(`${here}dist`, { recursive: true });
  const common = {
    absWorkingDir: here,
    entryPoints: ['src/index.ts'],
    bundle: true,
    platform: 'node',
    target: 'node20',
    legalComments: 'none',
    logLevel: 'warning',
  };
  await build({ ...common, format: 'esm', outfile: 'dist/index.js' });
  await build({ ...common, format: 'cjs', outfile: 'dist/index.cjs' });
  // The repository's tsc (node_modules/.bin, first on PATH under make).
  execFileSync(`${here}../../node_modules/.bin/tsc`, ['-p', `${here}tsconfig.json`], {
    stdio: 'inherit',
  });
  // The sources import with .ts extensions; a consumer's TypeScript resolves .js to the .d.ts beside it.
  for (const rel of readdirSync(`${here}dist/types`, { recursive: true })) {
    if (!String(rel).endsWith('.d.ts')) continue;
    const file = `${here}dist/types/${rel}`;
    writeFileSync(
      file,
      readFileSync(file, 'utf8').replace(/(from\s+'\.{1,2}\/[^']*)\.ts'/g, "$1.js'"),
    );
  }
  writeFileSync(
    `${here}dist/index.d.ts`,
    "export * from './types/clients/typescript/src/index.js';\n",
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await buildSdk();
