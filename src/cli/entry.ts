// The process entry of the bundle (dist/cli.cjs) and the single executable.
import { run } from './main.ts';

if (!process.versions.node.startsWith('24.')) {
  process.stderr.write(`error[internal]: bp-license-server needs Node 24; this is ${process.version}. Use make, or node_modules/.bin/node.\n`);
  process.exit(1);
}

const stopSignal = new Promise<string>((resolve) => {
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => resolve(sig));
});

run(process.argv.slice(2), {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  env: process.env,
  cwd: process.cwd(),
  isTTY: Boolean(process.stderr.isTTY),
  stopSignal,
}).then(
  (code) => {
    process.exitCode = code;
    // Nothing should keep the process alive once a command returned (signal listeners don't).
    setImmediate(() => process.exit(code));
  },
  (err: unknown) => {
    process.stderr.write(`error[internal]: ${String(err)}\n`);
    process.exit(1);
  },
);
