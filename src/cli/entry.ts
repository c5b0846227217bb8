// The process entry of the bundle (dist/cli.cjs) and the single executable.
import { run } from './main.ts';
import { createStreamOutput, type CliIo } from './io.ts';
import { runtimeRefusal } from './runtime.ts';

const refusal = runtimeRefusal(process.version, process.execPath);
if (refusal !== undefined) {
  process.stderr.write(refusal);
  process.exit(1);
}

// Output never ends the process: an EPIPE (the reader went away) is remembered, not thrown.
// stdout is never dropped (a command's output is complete or the exit code says it is not);
// stderr carries serve's log, and a reader that stopped reading must not make it grow without
// bound: past 1 MiB waiting, lines are dropped (the logger counts them and says so).
const stdout = createStreamOutput(process.stdout);
const stderr = createStreamOutput(process.stderr, { maxQueuedBytes: 1 << 20 });

// SIGUSR1/SIGUSR2 do nothing. The executable runs with --disable-sigusr1, with which Node blocks
// SIGUSR1 in every thread (it stays pending: no inspector, no listener called); the listener is for
// dist/cli.cjs under a plain node, where it takes the signal from the inspector. Without a listener
// SIGUSR2's default action would end the process. Signal listeners do not keep the process alive.
for (const sig of ['SIGUSR1', 'SIGUSR2'] as const) process.on(sig, () => {});

const signalListeners: Array<(signal: NodeJS.Signals) => void> = [];
let stopSignal: Promise<string> | undefined;
/** Catches the signals serve handles, once, when serve first asks for them. */
function listenForSignals(): Promise<string> {
  stopSignal ??= new Promise<string>((resolve) => {
    // SIGQUIT drains too (as nginx's graceful quit), rather than dumping core with requests in
    // flight. The others end a process by default yet mean nothing to a server: a stray timer
    // signal (ALRM, VTALRM, PROF), a UPS daemon's PWR, an IO signal, a CPU-time soft limit (XCPU);
    // they are logged and ignored. (Node already ignores XFSZ: a write past `ulimit -f` fails with
    // EFBIG, answered as a storage failure; listed so that it is logged.)
    for (const sig of [
      'SIGTERM',
      'SIGINT',
      'SIGQUIT',
      'SIGHUP',
      'SIGUSR1',
      'SIGUSR2',
      'SIGALRM',
      'SIGVTALRM',
      'SIGPROF',
      'SIGPWR',
      'SIGIO',
      'SIGXFSZ',
      'SIGXCPU',
    ] as const) {
      process.on(sig, () => {
        for (const l of signalListeners) l(sig);
        if (sig === 'SIGTERM' || sig === 'SIGINT' || sig === 'SIGQUIT') resolve(sig);
      });
    }
  });
  return stopSignal;
}

/**
 * The working directory, for relative paths. A directory deleted under the shell makes
 * process.cwd() throw (ENOENT): then $PWD (or /), so that absolute paths still work and relative
 * ones fail with a clear error about the file, not a stack trace.
 */
function currentDir(): string {
  try {
    return process.cwd();
  } catch {
    return process.env.PWD ?? '/';
  }
}

const io: CliIo = {
  stdout: (s) => stdout.write(s),
  stderr: (s) => stderr.write(s),
  env: process.env,
  cwd: currentDir(),
  isTTY: Boolean(process.stderr.isTTY),
  get stopSignal() {
    return listenForSignals();
  },
  onSignal(listener) {
    void listenForSignals();
    signalListeners.push(listener);
  },
};

/** Exits once stdout is written out; a command whose output did not all get out exits 1. */
async function finish(code: number): Promise<never> {
  await stdout.settled();
  if (stdout.failed && code === 0) {
    code = 1;
    stderr.write(
      'error[internal]: the output is incomplete: stdout was closed before it was all written\n',
    );
  }
  // A log reader that stopped reading does not hold the exit back for long.
  await stderr.settled(2000);
  process.exit(code);
}

run(process.argv.slice(2), io).then(
  (code) => finish(code),
  (err: unknown) => {
    stderr.write(`error[internal]: ${String(err)}\n`);
    return finish(1);
  },
);
