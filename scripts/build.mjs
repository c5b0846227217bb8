// Bundles the CLI (and with it the server) into one CommonJS file: dist/cli.cjs.
// The bin shim and the single executable both run this file.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';

const root = fileURLToPath(new URL('..', import.meta.url));

export async function buildCli() {
  await build({
    absWorkingDir: root,
    entryPoints: ['src/cli/entry.ts'],
    outfile: 'dist/cli.cjs',
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'cjs',
    loader: { '.sql': 'text' },
    external: ['*.node'],
    jsx: 'automatic',
    jsxImportSource: 'hono/jsx',
    legalComments: 'none',
    define: { __BPLS_VERSION__: JSON.stringify(JSON.parse(readFileSync(`${root}/package.json`, 'utf8')).version) },
    logLevel: 'warning',
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await buildCli();
