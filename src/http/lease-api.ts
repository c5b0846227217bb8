import type { ServerResponse } from 'node:http';
import type { Services } from '../context.ts';
import type { ClientGone } from '../domain/leases.ts';
import { leaseInstanceSchema, leaseRequestSchema, parseWith } from '../schemas.ts';
import { toIso } from '../clock.ts';
import { issuedLeaseView } from '../views.ts';

/** What a lease route answers: a status and a JSON body. */
export interface LeaseAnswer {
  status: 200 | 201;
  body: unknown;
}

/**
 * The client's connection, watched only while a request waits for a seat (wait_seconds): node's
 * response (its `close` before the answer is written) or a WHATWG request's abort signal.
 */
export type ClientLink = ServerResponse | AbortSignal;

/** A lease route: the parsed JSON body (and the client's connection) in, its answer out. */
export type LeaseHandler = (body: unknown, link?: ClientLink) => Promise<LeaseAnswer>;

/** Watches a ClientLink for a waiting request (see ClientGone in domain/leases.ts). */
function watch(link: ClientLink): ClientGone {
  return (onGone) => {
    if (link instanceof AbortSignal) {
      if (link.aborted) {
        onGone();
        return () => {};
      }
      link.addEventListener('abort', onGone, { once: true });
      return () => link.removeEventListener('abort', onGone);
    }
    const closed = () => {
      if (!link.writableEnded) onGone();
    };
    if (link.destroyed) closed();
    else link.once('close', closed);
    return () => link.off('close', closed);
  };
}

/** The client lease routes by path: no token (the lease id is the proof of possession). */
export type LeaseRoutePath =
  '/v1/license/lease' | '/v1/license/lease/renew' | '/v1/license/lease/release';

/**
 * The three client lease routes, apart from any HTTP framework: each takes the parsed JSON body and
 * answers, or throws an AppError (the codes of services.leases grant, renew and release, and
 * `invalid_request` for a body the schema refuses). The dispatch (http/dispatch.ts) serves them
 * straight, on node:http and through app.request() alike; the Hono router never sees them.
 */
export function createLeaseApi(services: Services): Record<LeaseRoutePath, LeaseHandler> {
  return {
    async '/v1/license/lease'(body, link) {
      const b = parseWith(leaseRequestSchema, body);
      // Only a request that may wait watches its connection: the plain grant pays nothing.
      const gone = b.wait_seconds !== undefined && link !== undefined ? watch(link) : undefined;
      const r = await services.leases.grant(
        {
          productId: b.product_id,
          tenantId: b.tenant_id,
          subjectType: b.subject_type,
          subjectId: b.subject_id,
          features: b.features,
          entitlementId: b.entitlement_id,
          borrowHours: b.borrow_hours,
          instanceId: b.instance_id,
          waitSeconds: b.wait_seconds,
        },
        gone,
      );
      return { status: 201, body: issuedLeaseView(r) };
    },

    async '/v1/license/lease/renew'(body) {
      const { lease_id, instance_id } = parseWith(leaseInstanceSchema, body);
      const r = await services.leases.renew(lease_id, instance_id);
      return { status: 200, body: issuedLeaseView(r) };
    },

    async '/v1/license/lease/release'(body) {
      const { lease_id, instance_id } = parseWith(leaseInstanceSchema, body);
      const l = await services.leases.release(lease_id, instance_id);
      return {
        status: 200,
        body: {
          lease_id: l.id,
          state: l.state,
          released_at: l.endedAt === null ? null : toIso(l.endedAt),
          ...(l.instances !== undefined ? { instances: l.instances } : {}),
        },
      };
    },
  };
}
