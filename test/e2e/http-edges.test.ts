// The HTTP edges of the real `serve` process: memory stays bounded whatever clients send (fault 2
// of issue 10), and SIGTERM answers every request already received before exiting 0 (fault 7).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, startServe, type ServeHandle } from '../spawn.ts';
import { parseAnswers } from '../http/raw.ts';
import { DEFAULT_BODY_BUDGET } from '../../src/http/limits.ts';
import { createConcurrent, initDataDir, stopAll } from './world.ts';

let root: string;
let dataDir: string;
let adminToken: string;
const servers: ServeHandle[] = [];

async function serve(): Promise<ServeHandle> {
  const s = await startServe(CLI, ['--data-dir', dataDir, '--port', '0', '--log-level', 'warn'], {
    cwd: root,
    timeoutMs: 60_000,
  });
  servers.push(s);
  return s;
}

/** Kilobytes from /proc/<pid>/status: VmRSS now, VmHWM the peak. */
function memKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(
    readFileSync(`/proc/${pid}/status`, 'utf8'),
  );
  return Number(m![1]);
}

function open(base: string): Promise<Socket> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const s = connect(Number(url.port), url.hostname, () => resolve(s));
    s.once('error', reject);
  });
}

const grant = (subject: string) => {
  const body = JSON.stringify({
    product_id: 'p',
    tenant_id: 't',
    subject_type: 'user',
    subject_id: subject,
  });
  return `POST /v1/license/lease HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
};

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'bpls-edges-'));
  dataDir = path.join(root, 'data');
  adminToken = (await initDataDir(root, dataDir)).admin_token;
  await createConcurrent(root, dataDir, 10_000);
});

afterAll(async () => {
  await stopAll(servers);
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('memory is bounded whatever clients send', () => {
  it(
    'bodies that never finish, on lease and admin routes, stay within the budget, and the budget comes back when they close',
    { timeout: 120_000 },
    async () => {
      const s = await serve();
      const pid = s.child.pid!;
      // Warm up, then the baseline.
      for (let i = 0; i < 50; i++)
        await fetch(`${s.base}/v1/license/lease`, {
          method: 'POST',
          body: grant(`w${i}`).split('\r\n\r\n')[1],
        });
      const baseKb = memKb(pid, 'VmRSS');

      const mb = Buffer.alloc(1_000_000, 'x');
      const answers = new Map<Socket, string>();
      const flood = async (n: number, head: string, bytes: number): Promise<Socket[]> => {
        const sockets = await Promise.all(Array.from({ length: n }, () => open(s.base)));
        for (const sock of sockets) {
          sock.on('error', () => {});
          answers.set(sock, '');
          sock.on('data', (d) => answers.set(sock, answers.get(sock)! + d.toString('latin1')));
          sock.write(head);
          sock.write(mb.subarray(0, bytes));
        }
        return sockets;
      };
      // As in the issue: 1,040,000 bytes of a lease body that never ends (over the 16 KiB cap: refused
      // at once, then drained), and 900 KB of admin bodies that never end (under the 1 MiB cap: held
      // until the budget (DEFAULT_BODY_BUDGET, 32 MiB) is full, then refused 503).
      const lease = await flood(
        300,
        'POST /v1/license/lease HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1040000\r\n\r\n',
        1_000_000,
      );
      const admin = await flood(
        150,
        'POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n',
        900_000,
      );
      const statuses = (socks: Socket[]) =>
        socks.map((x) => parseAnswers(answers.get(x)!)[0]?.status ?? 0);
      // Until the server has seen them all: every lease body answered, and the refusals stable for 1.5 s.
      let leaseStatuses = statuses(lease);
      let adminStatuses = statuses(admin);
      for (let stable = 0, last = -1, t0 = Date.now(); stable < 6 && Date.now() - t0 < 60_000;) {
        await new Promise((r) => setTimeout(r, 250));
        leaseStatuses = statuses(lease);
        adminStatuses = statuses(admin);
        const n = adminStatuses.filter((x) => x !== 0).length;
        stable = leaseStatuses.every((x) => x !== 0) && n === last ? stable + 1 : 0;
        last = n;
      }
      const peakKb = memKb(pid, 'VmHWM');
      expect(leaseStatuses.every((x) => x === 413)).toBe(true);
      const refused = adminStatuses.filter((x) => x === 503).length;
      const held = adminStatuses.filter((x) => x === 0).length;
      // The budget holds about DEFAULT_BODY_BUDGET / 900 KB bodies (37 at 32 MiB); every other one is refused busy.
      const fit = Math.floor(DEFAULT_BODY_BUDGET / 900_000);
      expect(held).toBeGreaterThan(fit / 2);
      expect(held).toBeLessThanOrEqual(fit + 1);
      expect(refused).toBe(150 - held);
      const busy = parseAnswers(answers.get(admin[adminStatuses.indexOf(503)]!)!)[0]!;
      expect(busy.headers['retry-after']).toBe('1');
      expect(busy.body.error.code).toBe('busy');
      // 300 x 1 MB + 150 x 0.9 MB were sent (435 MB); the server grew by the budget and change.
      const grownMb = (peakKb - baseKb) / 1024;
      console.log(
        `memory: baseline ${Math.round(baseKb / 1024)} MB, peak ${Math.round(peakKb / 1024)} MB (+${Math.round(grownMb)} MB); ${held} admin bodies held, ${refused} refused busy`,
      );
      expect(grownMb).toBeLessThan(DEFAULT_BODY_BUDGET / 2 ** 20 + 96);

      // The clients go: the bytes they held are released, and bodies are taken again.
      for (const x of [...lease, ...admin]) x.destroy();
      await new Promise((r) => setTimeout(r, 500));
      const big = JSON.stringify({ name: 'after', role: 'reader', pad: 'x'.repeat(900_000) });
      const again = await fetch(`${s.base}/v1/tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: big,
      });
      expect(again.status).toBe(400);
      expect(((await again.json()) as any).error.code).toBe('invalid_request');
      const afterKb = memKb(pid, 'VmRSS');
      console.log(`memory after the clients closed: ${Math.round(afterKb / 1024)} MB`);
      expect(await s.stop()).toEqual({ code: 0, signal: null });
    },
  );
});

describe('every refusal is readable (lingering close)', () => {
  it(
    "Node's fetch reads the 413 of an 8 MiB body, declared or chunked, on a lease and an admin route, 50 times of 50",
    { timeout: 120_000 },
    async () => {
      const s = await serve();
      const big = Buffer.alloc(8 << 20, 'x');
      const seen: Record<string, number> = {};
      for (let i = 0; i < 50; i++) {
        const path = i % 2 === 0 ? '/v1/license/lease' : '/v1/tokens';
        const chunked = i % 4 >= 2;
        const body = chunked
          ? new ReadableStream({
              start(c) {
                for (let k = 0; k < 32; k++) c.enqueue(big.subarray(0, 256 << 10));
                c.close();
              },
            })
          : big;
        let key: string;
        try {
          const r = await fetch(`${s.base}${path}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
            body,
            duplex: 'half',
          } as RequestInit);
          const e = ((await r.json()) as any).error;
          key = `${r.status} ${e?.code} ${r.headers.get('connection')}`;
        } catch (err) {
          // Before the lingering close: EPIPE in about half of the tries over 2 MiB.
          key = String((err as { cause?: { code?: string } }).cause?.code ?? err);
        }
        seen[key] = (seen[key] ?? 0) + 1;
      }
      expect(seen).toEqual({ '413 payload_too_large close': 50 });
      expect(await s.stop()).toEqual({ code: 0, signal: null });
    },
  );
});

describe('SIGTERM drains', () => {
  it(
    'answers every one of a burst of 64 grants sent just before it, then exits 0',
    { timeout: 60_000 },
    async () => {
      for (let round = 0; round < 3; round++) {
        const s = await serve();
        const sockets = await Promise.all(Array.from({ length: 64 }, () => open(s.base)));
        const results = sockets.map(
          (sock) =>
            new Promise<{ raw: string; error: string | undefined }>((resolve) => {
              let raw = '';
              let error: string | undefined;
              sock.on('data', (d) => (raw += d.toString('latin1')));
              sock.on('error', (err: NodeJS.ErrnoException) => (error = err.code));
              sock.on('close', () => resolve({ raw, error }));
            }),
        );
        sockets.forEach((sock, i) => sock.write(grant(`drain-${round}-${i}`)));
        s.child.kill('SIGTERM');
        const done = await Promise.all(results);
        for (const r of done) {
          expect(r.error).toBeUndefined();
          const [a, ...more] = parseAnswers(r.raw);
          expect(more).toEqual([]);
          expect(a?.status).toBe(201);
          expect(a?.body.lease_id).toMatch(/^lease_/);
          expect(a?.headers.connection).toBe('close');
        }
        expect(await s.exited).toEqual({ code: 0, signal: null });
      }
    },
  );
});
