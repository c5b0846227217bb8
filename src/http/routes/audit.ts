import type { Hono } from 'hono';
import { z } from 'zod';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import { parseWith } from '../../schemas.ts';
import type { AuditRow } from '../../domain/audit.ts';

export const auditQuery = z.strictObject({
  cursor: z
    .string()
    .regex(/^\d{1,15}$/, 'cursor is the next_cursor of the previous page')
    .optional(),
  limit: z.coerce.number().int().min(1).max(500).optional(),
});

/** An audit row as the API shows it: `at` with milliseconds, `details` parsed. */
export function auditRowView(r: AuditRow) {
  return {
    seq: r.seq,
    at: new Date(r.at).toISOString(),
    actor: r.actor,
    action: r.action,
    target_type: r.target_type,
    target_id: r.target_id,
    details: JSON.parse(r.details) as unknown,
    prev_hash: r.prev_hash,
    hash: r.hash,
  };
}

/** GET /v1/audit: the audit log in sequence order, paged (`cursor` = the last seq seen). */
export function registerAuditRoutes(app: Hono<AppEnv>, { services, auth }: RouteDeps): void {
  app.get('/v1/audit', auth('GET /v1/audit'), (c) => {
    const q = parseWith(auditQuery, c.req.query(), 'query');
    const page = services.audit.page(q.cursor === undefined ? 0 : Number(q.cursor), q.limit ?? 50);
    return c.json({
      data: page.rows.map(auditRowView),
      next_cursor: page.nextCursor,
      head: page.head,
    });
  });
}
