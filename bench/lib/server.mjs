// Starting and stopping the server under test, talking to its admin API, reading its /proc figures.
// Every process started here is remembered by pid and killed by pid (never by name).
import { spawn, spawnSync } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const live = new Set();

/** Kills (SIGKILL, by pid) anything started here that is still running. */
export function killStrays() {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
  live.clear();
}

/** `init --json` on a fresh data dir; returns the first admin token. cmd: [file, fixed args]. */
export function initDataDir(cmd, dataDir) {
  const r = spawnSync(cmd[0], [...cmd[1], '--data-dir', dataDir, '--json', 'init'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status !== 0)
    throw new Error(`init failed (${r.status ?? r.signal}): ${r.stdout}${r.stderr}`);
  const out = JSON.parse(r.stdout);
  if (!out.admin_token) throw new Error(`init gave no admin token: ${r.stdout}`);
  return out;
}

/**
 * Starts `serve --port 0` on 127.0.0.1 and resolves once it says where it listens. The server's
 * stderr (one JSON log line per request at the default level) goes straight to `logFile`.
 */
export function startServer(
  cmd,
  dataDir,
  { logFile, env = process.env, timeoutMs = 30_000, extraArgs = [] } = {},
) {
  const started = performance.now();
  const logFd = openSync(logFile, 'a');
  const child = spawn(
    cmd[0],
    [...cmd[1], '--data-dir', dataDir, 'serve', '--host', '127.0.0.1', '--port', '0', ...extraArgs],
    {
      stdio: ['ignore', 'pipe', logFd],
      env,
    },
  );
  closeSync(logFd);
  live.add(child);
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    }),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`serve did not say where it listens within ${timeoutMs} ms (log: ${logFile})`),
      );
    }, timeoutMs);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(
        new Error(
          `serve ended (${code ?? signal}) before listening; log: ${logFile}\n${safeRead(logFile).slice(-2000)}`,
        ),
      );
    });
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      clearTimeout(timer);
      const m = /^listening on (http:\/\/[^\s]+)$/.exec(line);
      if (!m) {
        child.kill('SIGKILL');
        reject(new Error(`unexpected first line from serve: ${JSON.stringify(line)}`));
        return;
      }
      resolve({
        child,
        pid: child.pid,
        url: m[1],
        listeningMs: performance.now() - started,
        startedAt: started,
        exited,
        /** SIGTERM (drain), SIGKILL after timeoutMs; resolves with the exit. */
        async stop(stopTimeoutMs = 15_000) {
          if (child.exitCode !== null || child.signalCode !== null) return exited;
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), stopTimeoutMs);
          const r = await exited;
          clearTimeout(t);
          return r;
        },
      });
    });
  });
}

function safeRead(file) {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** VmRSS and VmHWM (peak) of a process, in MB (MiB). */
export function memMb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

/** CPU seconds (user + system, all threads) a process has used so far. */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[11], fields[12] are utime, stime (fields 14, 15 of stat(5)), in clock ticks (100/s on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A small admin API client (Node's fetch, from this process, over 127.0.0.1). */
export function adminApi(base, token) {
  async function call(method, path, body) {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined
        ? { body: typeof body === 'string' ? body : JSON.stringify(body) }
        : {}),
      signal: AbortSignal.timeout(120_000),
    });
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 500)}`);
    return json;
  }
  return {
    get: (path) => call('GET', path),
    post: (path, body) => call('POST', path, body),
  };
}

/** Runs a node script as a child and parses the one JSON line it prints. */
export function runJsonChild(args, { timeoutMs = 600_000, env = process.env } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    live.add(child);
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      if (code !== 0)
        return reject(
          new Error(
            `node ${args.join(' ').slice(0, 200)} failed (${code ?? signal}):\n${err}${out}`,
          ),
        );
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)));
      } catch {
        reject(new Error(`node ${args[0]} printed no JSON:\n${out}\n${err}`));
      }
    });
  });
}
