/**
 * Outbound sync (`serve --sync-url`): on a schedule, pull the vendor's newest bundle for this
 * server and push this server's exports, over HTTP(S), with exactly the rules of the folder and
 * the shell. Off unless asked for; the server never needs it.
 *
 * The vendor side answers two routes under the base URL:
 * - `GET  <base>/v1/servers/<server_id>/bundles?after=<seq>`: 200 with the newest import bundle
 *   whose seq is above `after` (the file as the body), or 204 when there is none;
 * - `POST <base>/v1/servers/<server_id>/exports`: an export file as the body; any 2xx means stored.
 */
import { readdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { AppError, isAppError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { SyncService } from './service.ts';
import { startPeriodic } from '../periodic.ts';
import { declaredLength } from '../http/body.ts';
import { makeDirs } from '../fs-dirs.ts';

export interface OutboundSyncOptions {
  /** The vendor's base URL (http or https). */
  url: string;
  serverId: string;
  service: SyncService;
  log: Logger;
  /** Where exports wait until the vendor has them (`<sync dir>/outbox`); sent ones move to `sent/`. */
  outbox: string;
  intervalMs?: number;
  /** The first run, after start. */
  firstRunMs?: number;
  /** One request's time limit. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface OutboundSync {
  /** One pull, one export, pushes of what is pending; resolves when done (never rejects). */
  runOnce(): Promise<void>;
  stop(): Promise<void>;
}

const EXPORT_NAME = /-export-(\d{6,})\.bpsync$/;

/** Checks a --sync-url: http(s), no credentials or query in it. */
export function parseSyncUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new AppError(
      'invalid_request',
      `--sync-url is not a URL: ${JSON.stringify(raw).slice(0, 100)}`,
      { usage: true },
    );
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:')
    throw new AppError('invalid_request', '--sync-url must be an http:// or https:// URL', {
      usage: true,
    });
  if (u.username || u.password || u.search || u.hash)
    throw new AppError(
      'invalid_request',
      '--sync-url must not carry credentials, a query or a fragment',
      { usage: true },
    );
  return u.href.replace(/\/+$/, '');
}

export function startOutboundSync(o: OutboundSyncOptions): OutboundSync {
  const interval = o.intervalMs ?? 3_600_000;
  const timeoutMs = o.timeoutMs ?? 60_000;
  const doFetch = o.fetch ?? fetch;
  const base = `${o.url}/v1/servers/${encodeURIComponent(o.serverId)}`;
  const sent = join(o.outbox, 'sent');
  makeDirs(sent);

  async function pull(): Promise<void> {
    const after = o.service.status().last_import?.seq ?? 0;
    const res = await doFetch(`${base}/bundles?after=${after}`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (res.status === 204) {
      await res.body?.cancel();
      return;
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      o.log.warn('sync pull: the vendor answered an error', { status: res.status });
      return;
    }
    // A malformed length (null) is no length: the stream's own end is read.
    const length = declaredLength(res.headers.get('content-length')) ?? undefined;
    try {
      const r = await o.service.importStream(res.body, length, { actor: 'sync-url' });
      o.log.info('sync pull: bundle imported', {
        seq: r.seq,
        status: r.status,
        added: r.added,
        changed: r.changed,
        revoked: r.revoked,
        unchanged: r.unchanged,
        suspended: r.suspended,
      });
    } catch (err) {
      if (isAppError(err) && err.code === 'bundle_rejected')
        o.log.warn('sync pull: bundle rejected', { rule: err.details.rule, message: err.message });
      else throw err;
    }
  }

  function pending(): string[] {
    return readdirSync(o.outbox)
      .filter((n) => n.startsWith(`${o.serverId}-export-`) && EXPORT_NAME.test(n))
      .sort((a, b) => Number(EXPORT_NAME.exec(a)![1]) - Number(EXPORT_NAME.exec(b)![1]));
  }

  async function push(): Promise<void> {
    o.service.exportTo({ outDir: o.outbox, actor: 'sync-url' });
    // Oldest first, and stop at the first failure: the vendor receives exports in order.
    for (const name of pending()) {
      const file = join(o.outbox, name);
      const body = readFileSync(file);
      const seq = EXPORT_NAME.exec(name)![1]!;
      const res = await doFetch(`${base}/exports`, {
        method: 'POST',
        headers: {
          'content-type': 'application/octet-stream',
          'x-bpsync-seq': String(Number(seq)),
        },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      await res.body?.cancel();
      if (res.status < 200 || res.status > 299) {
        o.log.warn('sync push: the vendor did not take the export; it stays in the outbox', {
          file: name,
          status: res.status,
        });
        return;
      }
      renameSync(file, join(sent, name));
      o.log.info('sync push: export delivered', { file: name, seq: Number(seq) });
    }
  }

  async function cycle(stopping: AbortSignal): Promise<void> {
    for (const [what, step] of [
      ['pull', pull],
      ['push', push],
    ] as const) {
      if (stopping.aborted) return;
      try {
        await step();
      } catch (err) {
        const e =
          err instanceof AppError
            ? { code: err.code, message: err.message }
            : { error: String((err as Error)?.cause ?? err) };
        o.log.warn(`sync ${what} failed; will try again at the next run`, e);
      }
    }
  }

  // Each step reports its own failure; onError is for what escapes them (none expected).
  const loop = startPeriodic({
    intervalMs: interval,
    firstRunMs: o.firstRunMs ?? 1000,
    run: cycle,
    onError: (err) => o.log.warn('sync run failed; will try again', { error: String(err) }),
  });
  o.log.info('outbound sync on', { url: o.url, interval_s: interval / 1000 });
  return { runOnce: loop.runNow, stop: loop.stop };
}
