// The admin console (src/admin/console/, browser code) bundled into one script the admin page
// inlines: `import script from './console/main.ts?script'` gives the bundled text. The build
// (scripts/build.mjs: dist/cli.cjs and the executable) and the test run (vitest.config.ts) both
// make it here, so the page under test carries the script that ships. No file is read at run time.
import { build } from 'esbuild';
import path from 'node:path';

/** The import suffix that asks for a module bundled as an inline script. */
export const SCRIPT_SUFFIX = '?script';

/**
 * Bundles `entry` (an absolute path) and what it imports into one self-contained script: an IIFE
 * for browsers (ES2022), whitespace and syntax minified, names kept, no comments.
 * @param {string} entry
 * @returns {Promise<string>}
 */
export async function bundleScript(entry) {
  const out = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: 'es2022',
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    logLevel: 'warning',
  });
  return out.outputFiles[0].text;
}

/** The esbuild plugin: `<module>?script` imports resolve to the module's bundled text. */
export const inlineScriptPlugin = {
  name: 'inline-script',
  /** @param {import('esbuild').PluginBuild} b */
  setup(b) {
    b.onResolve({ filter: /\?script$/ }, (args) => ({
      path: path.resolve(args.resolveDir, args.path.slice(0, -SCRIPT_SUFFIX.length)),
      namespace: 'inline-script',
    }));
    b.onLoad({ filter: /.*/, namespace: 'inline-script' }, async (args) => ({
      contents: `export default ${JSON.stringify(await bundleScript(args.path))};`,
      loader: 'js',
      watchFiles: [args.path],
    }));
  },
};
