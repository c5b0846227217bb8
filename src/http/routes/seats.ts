import type { Hono, Context } from 'hono';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import { readJson } from '../middleware.ts';
import { visibleEntitlement } from '../scope.ts';
import {
  identifier,
  parseWith,
  seatAssignSchema,
  seatBulkSchema,
  seatListQuerySchema,
} from '../../schemas.ts';
import { pageView, seatRevokedView, seatsAssignedView, seatView } from '../../views.ts';
import type { SeatSubject } from '../../domain/seats.ts';

/** Named seats of per_user and per_machine entitlements. */
export function registerSeatRoutes(app: Hono<AppEnv>, { services, auth }: RouteDeps): void {
  const visible = (c: Context<AppEnv>) => visibleEntitlement(c, services.entitlements);

  app.get('/v1/entitlements/:id/seats', auth('GET /v1/entitlements/:id/seats'), (c) => {
    const e = visible(c);
    const q = parseWith(seatListQuerySchema, c.req.query(), 'query');
    const r = services.seats.list(e.id, q.cursor, q.limit);
    return c.json(pageView(r, seatView));
  });

  app.post('/v1/entitlements/:id/seats', auth('POST /v1/entitlements/:id/seats'), async (c) => {
    const e = visible(c);
    const b = parseWith(seatAssignSchema, await readJson(c));
    const subject: SeatSubject =
      'principal_id' in b
        ? { subjectType: services.seats.subjectTypeOf(e.id), subjectId: b.principal_id }
        : { subjectType: b.subject_type, subjectId: b.subject_id };
    const [seat] = services.seats.assign(e.id, [subject], c.get('principal').actor);
    return c.json(seatView(seat!), 201);
  });

  app.post(
    '/v1/entitlements/:id/seats/bulk',
    auth('POST /v1/entitlements/:id/seats/bulk'),
    async (c) => {
      const e = visible(c);
      const b = parseWith(seatBulkSchema, await readJson(c));
      const subjects: SeatSubject[] =
        'principal_ids' in b
          ? b.principal_ids.map((id) => ({
              subjectType: services.seats.subjectTypeOf(e.id),
              subjectId: id,
            }))
          : b.subjects.map((s) => ({ subjectType: s.subject_type, subjectId: s.subject_id }));
      const seats = services.seats.assign(e.id, subjects, c.get('principal').actor);
      return c.json(seatsAssignedView(seats), 201);
    },
  );

  app.delete(
    '/v1/entitlements/:id/seats/:seat_id',
    auth('DELETE /v1/entitlements/:id/seats/:seat_id'),
    (c) => {
      const e = visible(c);
      const seatId = parseWith(identifier, c.req.param('seat_id'), 'seat id');
      const r = services.seats.revoke(e.id, seatId, c.get('principal').actor);
      return c.json(seatRevokedView(r));
    },
  );
}
