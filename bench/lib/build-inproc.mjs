// Bundles bench/inproc-entry.ts (the project's TypeScript domain code) into bench/.build/inproc.mjs,
// the way scripts/build.mjs bundles the CLI (.sql as text), with npm packages left external so
// better-sqlite3 finds its own addon in node_modules.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
export const INPROC_BUNDLE = `${root}bench/.build/inproc.mjs`;

export async function buildInproc() {
  await build({
    absWorkingDir: root,
    entryPoints: ['bench/inproc-entry.ts'],
    outfile: 'bench/.build/inproc.mjs',
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'esm',
    packages: 'external',
    loader: { '.sql': 'text' },
    external: ['*.node'],
    define: {
      __BPLS_VERSION__: JSON.stringify(
        JSON.parse(readFileSync(`${root}package.json`, 'utf8')).version,
      ),
    },
    logLevel: 'warning',
  });
  return INPROC_BUNDLE;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await buildInproc());
