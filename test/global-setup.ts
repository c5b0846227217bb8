// Every test run starts from a fresh bundle, so the spawned CLI is the code under test.
import { buildCli } from '../scripts/build.mjs';

export default async function setup(): Promise<void> {
  if (!process.versions.node.startsWith('24.')) {
    throw new Error(`tests need Node 24 (this is ${process.version}); run them through make test`);
  }
  await buildCli();
}
