import { defineConfig } from 'vitest/config';
import { SCRIPT_SUFFIX, bundleScript } from './scripts/admin-console.mjs';

export default defineConfig({
  plugins: [
    {
      // `./x.ts?script` is the module bundled into one inline script, as the build makes it.
      name: 'inline-script',
      enforce: 'pre',
      // The bundle is made of every module the entry imports, but the on-disk module cache keys
      // it by the entry's text alone: it would serve a stale console after an edit elsewhere.
      configureVitest({
        defineCacheKeyGenerator,
      }: {
        defineCacheKeyGenerator: (f: (c: { id: string }) => string | false | undefined) => void;
      }) {
        defineCacheKeyGenerator(({ id }) => (id.endsWith(SCRIPT_SUFFIX) ? false : undefined));
      },
      async load(id: string) {
        if (!id.endsWith(SCRIPT_SUFFIX)) return undefined;
        const text = await bundleScript(id.slice(0, -SCRIPT_SUFFIX.length));
        return { code: `export default ${JSON.stringify(text)};`, map: null };
      },
    },
    {
      // Migrations are embedded as text, as esbuild's text loader does in the build.
      name: 'sql-text',
      transform(code: string, id: string) {
        if (id.endsWith('.sql'))
          return { code: `export default ${JSON.stringify(code)};`, map: null };
        return undefined;
      },
    },
  ],
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts', 'clients/typescript/test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
