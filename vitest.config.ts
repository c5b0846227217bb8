import { defineConfig } from 'vitest/config';
import { SCRIPT_SUFFIX, bundleScript } from './scripts/admin-console.mjs';

/**
 * The test files whose subject is the store under the app: they run on both stores. The rest are
 * about one store (src/storage: SQLite's files and pragmas), the process (test/e2e, spawned on
 * SQLite; the PostgreSQL processes have test/e2e/pg-failover.test.ts), the admin console in a
 * browser (it calls the same API), or no store at all.
 */
const POSTGRES_SUITE = [
  'src/domain/quotas.test.ts',
  'src/domain/time-guard.test.ts',
  'src/http/routes/**/*.test.ts',
  'test/http/*.test.ts',
  'test/sync/*.test.ts',
];

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
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Every test once on SQLite; the store-dependent ones (the harness's store: the HTTP app, the
    // domain over it, sync) once more on PostgreSQL, on the run's test cluster (test/global-setup.ts).
    projects: [
      {
        extends: true,
        test: {
          name: 'sqlite',
          include: [
            'src/**/*.test.ts',
            'test/**/*.test.ts',
            'clients/typescript/test/**/*.test.ts',
          ],
        },
      },
      {
        extends: true,
        test: {
          name: 'postgres',
          include: POSTGRES_SUITE,
          // The folder watcher's file-system cases (a 20,000-file flood, permissions) are about
          // files, not the store; the imports it starts are the import tests', which run here.
          // HTTP parsing edges and the request pipeline are the same over either store.
          // To keep make test within its 10 minutes: the bundle-order permutations (120 imports)
          // and the queue's timing cases run on SQLite only; PostgreSQL's import path is
          // import-steps/export/http's, its queue across nodes the failover test's.
          exclude: [
            'test/sync/import.test.ts',
            'src/http/routes/lease-queue.test.ts',
            'test/sync/watch.test.ts',
            'test/http/http-edges.test.ts',
            'test/http/pipeline.test.ts',
          ],
          env: { BPLS_TEST_STORE: 'postgres' },
        },
      },
    ],
  },
});
