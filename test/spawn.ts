/** Spawning the real CLI and the real executable: run to completion, or start `serve` and talk to it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The bundled CLI under the project's Node 24 (vitest runs on it). */
export const CLI: [string, string[]] = [process.execPath, [`${ROOT}dist/cli.cjs`]];

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface SpawnOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  input?: string;
  /** startServe: a file descriptor for the child's stderr (e.g. a FIFO's write end) instead of a pipe read here. */
  stderrFd?: number;
}

const live = new Set<ChildProcess>();

/** Kills (by pid) whatever a test started and left running. Call from afterAll. */
export function killStrays(): void {
  for (const child of live) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
  live.clear();
}

export function runProcess(
  cmd: [string, string[]],
  args: string[],
  opts: SpawnOptions = {},
): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0], [...cmd[1], ...args], {
      cwd: opts.cwd ?? ROOT,
      env: opts.env ?? { ...process.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    live.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `${args.join(' ')} took over ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`,
        ),
      );
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export interface ServeHandle {
  child: ChildProcess;
  base: string;
  firstLine: string;
  /** Milliseconds from spawn to the "listening on" line. */
  listeningMs: number;
  stderr(): string;
  /** Lines printed to stdout after the first (there must be none). */
  extraStdout: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then waits for the exit (SIGKILL after timeoutMs). */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `serve` and resolves once its one stdout line says where it listens. */
export function startServe(
  cmd: [string, string[]],
  args: string[],
  opts: SpawnOptions = {},
): Promise<ServeHandle> {
  const started = performance.now();
  const child = spawn(cmd[0], [...cmd[1], 'serve', ...args], {
    cwd: opts.cwd ?? ROOT,
    env: opts.env ?? { ...process.env },
    stdio: ['ignore', 'pipe', opts.stderrFd ?? 'pipe'],
  });
  live.add(child);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    }),
  );
  const lines = createInterface({ input: child.stdout! });
  const extraStdout: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `serve did not say where it listens within ${opts.timeoutMs ?? 15_000} ms\nstderr: ${stderr}`,
        ),
      );
    }, opts.timeoutMs ?? 15_000);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`serve ended (${code ?? signal}) before listening\nstderr: ${stderr}`));
    });
    lines.once('line', (firstLine) => {
      clearTimeout(timer);
      lines.on('line', (l) => extraStdout.push(l));
      const m = /^listening on (https?:\/\/[^\s]+)$/.exec(firstLine);
      if (!m) {
        child.kill('SIGKILL');
        reject(new Error(`unexpected first line: ${JSON.stringify(firstLine)}`));
        return;
      }
      resolve({
        child,
        base: m[1]!,
        firstLine,
        listeningMs: performance.now() - started,
        stderr: () => stderr,
        extraStdout,
        exited,
        async stop(timeoutMs = 10_000) {
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
          const r = await exited;
          clearTimeout(t);
          return r;
        },
      });
    });
  });
}
