import { openSync, mkdtempSync, rmSync, createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, basename } from 'node:path';
import { Readable } from 'node:stream';
import type { Hono } from 'hono';
import { z } from 'zod';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import { parseWith } from '../../schemas.ts';
import { declaredLength } from '../body.ts';

export const importQuery = z.strictObject({
  dry_run: z.enum(['true', 'false', '1', '0']).optional(),
});

/** /v1/sync: bundles over HTTP, with the same rules as the CLI. */
export function registerSyncRoutes(app: Hono<AppEnv>, { services, auth }: RouteDeps): void {
  // The body is the raw bundle file (application/octet-stream), streamed to a temporary file:
  // this route has no JSON body limit, the bundle size cap applies while it arrives.
  app.post('/v1/sync/import', auth('POST /v1/sync/import'), async (c) => {
    const q = parseWith(importQuery, c.req.query(), 'query');
    const declared = declaredLength(c.req.header('content-length')) ?? undefined;
    const r = await services.sync.importStream(c.req.raw.body, declared, {
      dryRun: q.dry_run === 'true' || q.dry_run === '1',
      actor: c.get('principal').actor,
    });
    return c.json(r);
  });

  // Answers the signed export itself; the server keeps no copy (the CLI writes to the outbox).
  app.post('/v1/sync/export', auth('POST /v1/sync/export'), (c) => {
    const dir = mkdtempSync(join(tmpdir(), 'bpls-export-'));
    try {
      const r = services.sync.exportTo({
        outDir: dir,
        actor: c.get('principal').actor,
        recordFile: false,
      });
      // Opened before the folder is removed: the open descriptor keeps the data until it is sent.
      const fd = openSync(r.file, 'r');
      const stream = createReadStream('', { fd });
      c.header('Content-Type', 'application/octet-stream');
      c.header('Content-Disposition', `attachment; filename="${basename(r.file)}"`);
      c.header('Content-Length', String(r.bytes));
      c.header('X-Bpsync-Seq', String(r.seq));
      c.header('X-Bpsync-Manifest-Sha256', r.manifest_sha256);
      return c.body(Readable.toWeb(stream) as ReadableStream<Uint8Array>, 200);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  app.get('/v1/sync/status', auth('GET /v1/sync/status'), (c) => c.json(services.sync.status()));
}
