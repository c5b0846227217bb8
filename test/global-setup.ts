// Every test run starts from fresh builds, so what the tests spawn is the code under test: the CLI
// bundle (dist/cli.cjs), the single executable (dist/bp-license-server) and the TypeScript SDK
// (clients/typescript/dist). Built once here: a test file that rebuilt one while another spawns it
// could hand it a half-written file.
import { buildCli } from '../scripts/build.mjs';
import { buildBinary } from '../scripts/build-binary.mjs';
import { buildSdk } from '../clients/typescript/build.mjs';

export default async function setup(): Promise<void> {
  if (!process.versions.node.startsWith('24.')) {
    throw new Error(`tests need Node 24 (this is ${process.version}); run them through make test`);
  }
  await buildCli();
  await Promise.all([buildBinary({ bundle: false }), buildSdk()]);
}
