import type { Hono, Context } from 'hono';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import type { Services } from '../../context.ts';
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
import type { Entitlement } from '../../domain/types.ts';

/**
 * The four seat handlers, given the entitlement the route found (and checked the token may see):
 * /v1/entitlements/{id}/seats and the Template Licensing face's
 * /api/v1/organizations/{org}/licenses/{id}/seats answer alike.
 */
export function seatHandlers(services: Services) {
  return {
    list(c: Context<AppEnv>, e: Entitlement) {
      const q = parseWith(seatListQuerySchema, c.req.query(), 'query');
      return c.json(pageView(services.seats.list(e.id, q.cursor, q.limit), seatView));
    },
    async assign(c: Context<AppEnv>, e: Entitlement) {
      const b = parseWith(seatAssignSchema, await readJson(c));
      const subject: SeatSubject =
        'principal_id' in b
          ? { subjectType: services.seats.subjectTypeOf(e.id), subjectId: b.principal_id }
          : { subjectType: b.subject_type, subjectId: b.subject_id };
      const [seat] = services.seats.assign(e.id, [subject], c.get('principal').actor);
      return c.json(seatView(seat!), 201);
    },
    async bulk(c: Context<AppEnv>, e: Entitlement) {
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
    revoke(c: Context<AppEnv>, e: Entitlement) {
      const seatId = parseWith(identifier, c.req.param('seat_id'), 'seat id');
      const r = services.seats.revoke(e.id, seatId, c.get('principal').actor);
      return c.json(seatRevokedView(r));
    },
  };
}

/** Named seats of per_user and per_machine entitlements. */
export function registerSeatRoutes(app: Hono<AppEnv>, { services, auth }: RouteDeps): void {
  const visible = (c: Context<AppEnv>) => visibleEntitlement(c, services.entitlements);
  const seats = seatHandlers(services);

  app.get('/v1/entitlements/:id/seats', auth('GET /v1/entitlements/:id/seats'), (c) =>
    seats.list(c, visible(c)),
  );

  app.post('/v1/entitlements/:id/seats', auth('POST /v1/entitlements/:id/seats'), (c) =>
    seats.assign(c, visible(c)),
  );

  app.post('/v1/entitlements/:id/seats/bulk', auth('POST /v1/entitlements/:id/seats/bulk'), (c) =>
    seats.bulk(c, visible(c)),
  );

  app.delete(
    '/v1/entitlements/:id/seats/:seat_id',
    auth('DELETE /v1/entitlements/:id/seats/:seat_id'),
    (c) => seats.revoke(c, visible(c)),
  );
}
