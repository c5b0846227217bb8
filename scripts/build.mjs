// Bundles the CLI (and with it the server) into one CommonJS file: dist/cli.cjs.
// The bin shim and the single executable both run this file.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { inlineScriptPlugin } from './admin-console.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * @param {{ outfile?: string, compact?: boolean }} [options] compact: without whitespace and
 *   comments (names kept, so stack traces still say which function); the single executable embeds
 *   this form, ~2 MB less resident than the readable one. The readable dist/cli.cjs is what
 *   bench/profile.mjs maps back to source files.
 */
export async function buildCli({ outfile = 'dist/cli.cjs', compact = false } = {}) {
  // The WAL checkpoint thread's script (src/storage/checkpointer.ts runs it with `eval: true`):
  // inside the single executable a worker cannot load a file from the bundle.
  const common = {
    absWorkingDir: root,
    minifyWhitespace: compact,
    minifySyntax: compact,
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'cjs',
    // pg's optional native binding (pg-native) is never used: pure JavaScript.
    external: ['*.node', 'pg-native'],
    legalComments: 'none',
    logLevel: 'warning',
  };
  const worker = await build({
    ...common,
    entryPoints: ['src/storage/checkpoint-worker.ts'],
    write: false,
  });
  // The PostgreSQL connection thread (src/storage/pg/driver.ts), the same way.
  const pgWorker = await build({
    ...common,
    entryPoints: ['src/storage/pg/worker.ts'],
    write: false,
  });
  await build({
    ...common,
    entryPoints: ['src/cli/entry.ts'],
    outfile,
    // The admin page's script (src/admin/console/), bundled for browsers and inlined as text.
    plugins: [inlineScriptPlugin],
    loader: { '.sql': 'text' },
    jsx: 'automatic',
    jsxImportSource: 'hono/jsx',
    define: {
      __BPLS_VERSION__: JSON.stringify(
        JSON.parse(readFileSync(`${root}/package.json`, 'utf8')).version,
      ),
      __BPLS_CHECKPOINT_WORKER__: JSON.stringify(worker.outputFiles[0].text),
      __BPLS_PG_WORKER__: JSON.stringify(pgWorker.outputFiles[0].text),
    },
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await buildCli();
