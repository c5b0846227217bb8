/** Raw HTTP over node:net: bytes no HTTP client would send, and the answer as the server wrote it. */
import { connect, type Socket } from 'node:net';

export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: any;
  text: string;
  /** How the connection ended: the server closed it, reset it, or we stopped waiting. */
  ended: 'close' | 'reset' | 'timeout';
}

/** Parses every HTTP/1.x answer in `raw` (pipelined answers come one after another). */
export function parseAnswers(raw: string): Omit<RawAnswer, 'ended'>[] {
  const out: Omit<RawAnswer, 'ended'>[] = [];
  let rest = raw;
  while (rest.startsWith('HTTP/1.')) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) break;
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const len = Number(headers['content-length'] ?? 0);
    const text = rest.slice(end + 4, end + 4 + len);
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    out.push({ status: Number(statusLine!.split(' ')[1]), headers, body, text });
    rest = rest.slice(end + 4 + len);
  }
  return out;
}

/**
 * Connects to `base`, writes `parts` (each after `gapMs`), and collects what the server sends until
 * it closes the connection (or `waitMs` passes). Our side stays open, unless `halfClose` ends it
 * after the last part (as `nc -N` does).
 */
export function rawExchange(
  base: string,
  parts: (string | Buffer)[],
  opts: { gapMs?: number; waitMs?: number; halfClose?: boolean } = {},
): Promise<{ answers: Omit<RawAnswer, 'ended'>[]; raw: string; ended: RawAnswer['ended'] }> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const socket: Socket = connect(Number(url.port), url.hostname);
    const got: Buffer[] = [];
    let ended: RawAnswer['ended'] = 'close';
    const timer = setTimeout(() => {
      ended = 'timeout';
      socket.destroy();
    }, opts.waitMs ?? 5_000);
    socket.on('data', (d) => got.push(d));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') ended = 'reset';
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(got).toString('latin1');
      resolve({ answers: parseAnswers(raw), raw, ended });
    });
    socket.on('connect', async () => {
      for (const p of parts) {
        if (socket.destroyed) return;
        socket.write(p);
        if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
      }
      if (opts.halfClose) socket.end();
    });
  });
}
