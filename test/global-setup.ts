// Every test run starts from fresh builds, so what the tests spawn is the code under test: the CLI
// bundle (dist/cli.cjs), the single executable (dist/bp-license-server) and the TypeScript SDK
// (clients/typescript/dist). Built once here: a test file that rebuilt one while another spawns it
// could hand it a half-written file.
//
// Then one PostgreSQL cluster for the whole run (scripts/pg-cluster.mjs: its own temp dir and free
// port; Debian's packaged service is not used). Its superuser URL goes to the test workers in
// process.env.BPLS_TEST_PG_ADMIN_URL: vitest forks its workers after the global setup has run,
// with a copy of this process's environment, so they (and whatever they spawn) inherit it.
// test/pg.ts hands each test file a database of its own on it. PostgreSQL missing fails the run
// with the error naming the package: it is never skipped.
import { buildCli } from '../scripts/build.mjs';
import { buildBinary } from '../scripts/build-binary.mjs';
import { buildSdk } from '../clients/typescript/build.mjs';
import { startCluster } from '../scripts/pg-cluster.mjs';
import { PG_ADMIN_URL_ENV } from './pg.ts';

export default async function setup(): Promise<() => Promise<void>> {
  if (!process.versions.node.startsWith('24.')) {
    throw new Error(`tests need Node 24 (this is ${process.version}); run them through make test`);
  }
  await buildCli();
  await Promise.all([buildBinary({ bundle: false }), buildSdk()]);
  // The run's shared cluster: its databases are thrown away, so no fsync (a test that needs
  // PostgreSQL's durability or a restart starts a cluster of its own).
  const cluster = await startCluster({ durable: false });
  process.env[PG_ADMIN_URL_ENV] = cluster.url;
  return async () => {
    delete process.env[PG_ADMIN_URL_ENV];
    await cluster.stop();
  };
}
