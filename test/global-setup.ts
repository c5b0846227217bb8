// Every test run starts from a fresh bundle and executable, so the spawned CLI is the code under test.
import { buildCli } from '../scripts/build.mjs';
import { buildBinary } from '../scripts/build-binary.mjs';

export default async function setup(): Promise<void> {
  if (!process.versions.node.startsWith('24.')) {
    throw new Error(`tests need Node 24 (this is ${process.version}); run them through make test`);
  }
  await buildCli();
  // Built here, once, rather than by each test file that runs it: two builds at once would share
  // the intermediate files in dist/.
  await buildBinary({ bundle: false });
}
