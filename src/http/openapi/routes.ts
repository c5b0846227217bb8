/**
 * What the OpenAPI document says of each route the server answers: a summary, the zod schemas the
 * route parses (path parameters, query, body: the very ones in schemas.ts and the route modules),
 * the schema of its answer (http/openapi/answers.ts) and the error codes peculiar to it. The
 * permission comes from the permission table (http/permissions.ts); the error codes every route of
 * a shape can answer (a token, a body, an :id, a write) are added by http/openapi/build.ts.
 * Every row of ROUTES must have a row here (tsc refuses otherwise); test/http/openapi.test.ts holds
 * the table to the routes the app really registers.
 */
import type { z } from 'zod';
import type { ErrorCode } from '../../errors.ts';
import type { RouteKey } from '../permissions.ts';
import {
  checkQuerySchema,
  entitlementCreateSchema,
  entitlementUpdateSchema,
  identifier,
  importEnvelopeSchema,
  installationCreateSchema,
  installationListQuerySchema,
  installationPatchSchema,
  leaseInstanceSchema,
  leaseListQuerySchema,
  leaseRequestSchema,
  listQuerySchema,
  renewSchema,
  seatAssignSchema,
  seatBulkSchema,
  seatListQuerySchema,
  statusQuerySchema,
  tokenCreateSchema,
  usageCsvQuerySchema,
} from '../../schemas.ts';
import { auditQuery } from '../routes/audit.ts';
import { importQuery } from '../routes/sync.ts';
import * as answers from './answers.ts';
import { TEMPLATE_ROUTE_DOCS } from './template-routes.ts';

/** An answer that is not JSON: its media type and what it holds. */
export interface RawAnswer {
  mediaType: string;
  description: string;
}

export interface RouteDoc {
  summary: string;
  /** Path parameters by name (the `:name` segments of the path). */
  params?: Record<string, z.ZodType>;
  /** The query string's schema (an object of strings, as the route parses it). */
  query?: z.ZodObject;
  /** The JSON body's schema, or a raw body (the sync bundle) by its media type. */
  body?: z.ZodType | RawAnswer;
  /** The success status and its answer (a schema of http/openapi/answers.ts, or a raw body). */
  status: 200 | 201;
  answer: z.ZodType | RawAnswer;
  /** Other statuses that answer a JSON body of their own (not the error envelope). */
  alsoAnswers?: Record<number, z.ZodType>;
  /** Error codes this route answers beyond those of its shape (see build.ts errorCodesOf). */
  errors?: ErrorCode[];
}

/** The routes without a token (no row in ROUTES). */
export type PublicRoute =
  | 'GET /admin'
  | 'GET /healthz'
  | 'GET /readyz'
  | 'GET /metrics'
  | 'GET /openapi.json'
  | 'GET /v1/license/keys'
  | 'POST /v1/license/lease'
  | 'POST /v1/license/lease/renew'
  | 'POST /v1/license/lease/release';

const id = { id: identifier };
const entitlementWrite: ErrorCode[] = ['conflict', 'managed_by_bundle'];
const leaseRefusals: ErrorCode[] = [
  'entitlement_inactive',
  'seat_not_assigned',
  'feature_not_entitled',
  'seats_exhausted',
  'clock_suspect',
];

/** Every route the server answers, by `METHOD /path` as the router writes it. */
export const ROUTE_DOCS: Record<RouteKey | PublicRoute, RouteDoc> = {
  'GET /admin': {
    summary: 'The web admin console (HTML; it holds no data, its API calls need a token)',
    status: 200,
    answer: { mediaType: 'text/html', description: 'the page' },
  },
  'GET /healthz': { summary: 'Liveness', status: 200, answer: answers.healthAnswer },
  'GET /readyz': {
    summary:
      'Readiness: 503 while draining, while storage refuses writes, or a suspect clock refuses',
    status: 200,
    answer: answers.readyAnswer,
    alsoAnswers: { 503: answers.readyAnswer },
  },
  'GET /metrics': {
    summary: 'Prometheus metrics (aggregates only, no names)',
    status: 200,
    answer: { mediaType: 'text/plain', description: 'Prometheus text format 0.0.4' },
  },
  'GET /openapi.json': {
    summary: 'This document',
    status: 200,
    answer: answers.anyObject,
  },
  'POST /v1/entitlements': {
    summary: 'Create an entitlement',
    body: entitlementCreateSchema,
    status: 201,
    answer: answers.entitlementAnswer,
    errors: ['conflict', 'forbidden'],
  },
  'GET /v1/entitlements': {
    summary: 'List entitlements (filters; cursor paged)',
    query: listQuerySchema,
    status: 200,
    answer: answers.entitlementPageAnswer,
  },
  'POST /v1/entitlements/import': {
    summary: 'Bulk import: all valid or nothing; upserts by external_id',
    body: importEnvelopeSchema,
    status: 200,
    answer: answers.importResultAnswer,
    errors: ['conflict', 'forbidden'],
  },
  'GET /v1/entitlements/:id': {
    summary: 'One entitlement, with its use right now',
    params: id,
    status: 200,
    answer: answers.entitlementDetailAnswer,
  },
  'PUT /v1/entitlements/:id': {
    summary:
      'Change the fields given (policy_json replaced whole, starts_at, ends_at, external_id)',
    params: id,
    body: entitlementUpdateSchema,
    status: 200,
    answer: answers.entitlementAnswer,
    errors: entitlementWrite,
  },
  'PATCH /v1/entitlements/:id': {
    summary: 'The same as PUT: change the fields given',
    params: id,
    body: entitlementUpdateSchema,
    status: 200,
    answer: answers.entitlementAnswer,
    errors: entitlementWrite,
  },
  'POST /v1/entitlements/:id/suspend': {
    summary: 'Suspend: no new leases or renewals until resumed',
    params: id,
    status: 200,
    answer: answers.entitlementAnswer,
    errors: entitlementWrite,
  },
  'POST /v1/entitlements/:id/resume': {
    summary: 'Resume a suspended entitlement',
    params: id,
    status: 200,
    answer: answers.entitlementAnswer,
    errors: entitlementWrite,
  },
  'POST /v1/entitlements/:id/revoke': {
    summary: 'Revoke (final)',
    params: id,
    status: 200,
    answer: answers.entitlementAnswer,
    errors: entitlementWrite,
  },
  'POST /v1/entitlements/:id/renew': {
    summary: 'Renew for period_months (from the end of term, or from now once lapsed)',
    params: id,
    body: renewSchema,
    status: 200,
    answer: answers.entitlementAnswer,
    errors: entitlementWrite,
  },
  'GET /v1/entitlements/:id/check': {
    summary: 'Could a lease be had now (for one subject when given)',
    params: id,
    query: checkQuerySchema,
    status: 200,
    answer: answers.leaseCheckAnswer,
  },
  'GET /v1/entitlements/:id/usage': {
    summary: 'Usage over the last 30 days',
    params: id,
    status: 200,
    answer: answers.usageAnswer,
  },
  'GET /v1/entitlements/:id/usage.csv': {
    summary: 'Daily usage as CSV (RFC 4180)',
    params: id,
    query: usageCsvQuerySchema,
    status: 200,
    answer: { mediaType: 'text/csv', description: 'one row a day, with a header row' },
  },
  'GET /v1/entitlements/:id/seats': {
    summary: 'Named seats (cursor paged)',
    params: id,
    query: seatListQuerySchema,
    status: 200,
    answer: answers.seatPageAnswer,
  },
  'POST /v1/entitlements/:id/seats': {
    summary: 'Assign a seat',
    params: id,
    body: seatAssignSchema,
    status: 201,
    answer: answers.seatAnswer,
    errors: ['conflict', 'seats_exhausted', 'entitlement_inactive'],
  },
  'POST /v1/entitlements/:id/seats/bulk': {
    summary: 'Assign many seats: all or nothing',
    params: id,
    body: seatBulkSchema,
    status: 201,
    answer: answers.seatsAssignedAnswer,
    errors: ['conflict', 'seats_exhausted', 'entitlement_inactive'],
  },
  'DELETE /v1/entitlements/:id/seats/:seat_id': {
    summary: 'Revoke a seat (its holder’s lease ends with it)',
    params: { ...id, seat_id: identifier },
    status: 200,
    answer: answers.seatRevokedAnswer,
    errors: ['conflict'],
  },
  'GET /v1/entitlements/:id/installations': {
    summary: 'The entitlement’s installations, the units of its quotas (cursor paged)',
    params: id,
    query: installationListQuerySchema,
    status: 200,
    answer: answers.installationPageAnswer,
  },
  'POST /v1/entitlements/:id/installations': {
    summary:
      'Install: use one unit of a quota (200 with the first installation when its Idempotency-Key is sent again)',
    params: id,
    body: installationCreateSchema,
    status: 201,
    answer: answers.installationAnswer,
    alsoAnswers: { 200: answers.installationAnswer },
    errors: ['conflict', 'quota_exhausted', 'entitlement_inactive', 'clock_suspect'],
  },
  'DELETE /v1/entitlements/:id/installations/:installation_id': {
    summary: 'Remove an installation: its unit is free again',
    params: { ...id, installation_id: identifier },
    status: 200,
    answer: answers.installationAnswer,
  },
  'GET /v1/installations': {
    summary: 'Installations of every visible entitlement (filters; cursor paged)',
    query: installationListQuerySchema,
    status: 200,
    answer: answers.installationPageAnswer,
  },
  'GET /v1/installations/:id': {
    summary: 'One installation',
    params: id,
    status: 200,
    answer: answers.installationAnswer,
  },
  'PATCH /v1/installations/:id': {
    summary: 'Record the version an installation runs (only while the entitlement is active)',
    params: id,
    body: installationPatchSchema,
    status: 200,
    answer: answers.installationAnswer,
    errors: ['entitlement_inactive', 'clock_suspect'],
  },
  'GET /v1/license/status': {
    summary: 'A subject’s entitlement, status, current lease, features and usage',
    query: statusQuerySchema,
    status: 200,
    answer: answers.subjectStatusAnswer,
    errors: ['not_found'],
  },
  'GET /v1/license/keys': {
    summary: 'The server’s public key, to verify lease tokens offline',
    status: 200,
    answer: answers.keysAnswer,
  },
  'POST /v1/license/lease': {
    summary: 'Request a lease (client; no token)',
    body: leaseRequestSchema,
    status: 201,
    answer: answers.issuedLeaseAnswer,
    errors: ['not_found', ...leaseRefusals],
  },
  'POST /v1/license/lease/renew': {
    summary: 'Renew a lease: a new token and expiry (client; no token)',
    body: leaseInstanceSchema,
    status: 200,
    answer: answers.issuedLeaseAnswer,
    errors: [
      'not_found',
      'lease_expired',
      'lease_released',
      'entitlement_inactive',
      'seats_exhausted',
      'clock_suspect',
    ],
  },
  'POST /v1/license/lease/release': {
    summary: 'Release a lease: frees its seat; idempotent (client; no token)',
    body: leaseInstanceSchema,
    status: 200,
    answer: answers.releasedLeaseAnswer,
    errors: ['not_found'],
  },
  'GET /v1/leases': {
    summary: 'Leases in force (filters; cursor paged)',
    query: leaseListQuerySchema,
    status: 200,
    answer: answers.leasePageAnswer,
  },
  'POST /v1/leases/:id/revoke': {
    summary: 'End a lease now',
    params: id,
    status: 200,
    answer: answers.leaseAnswer,
    errors: ['conflict'],
  },
  'POST /v1/tokens': {
    summary: 'Make an API token; its secret is in this answer only',
    body: tokenCreateSchema,
    status: 201,
    answer: answers.createdApiTokenAnswer,
  },
  'GET /v1/whoami': {
    summary: 'Who the calling token is: name, role, tenant, permissions; the server clock',
    status: 200,
    answer: answers.whoamiAnswer,
  },
  'GET /v1/tokens': {
    summary: 'API tokens (never their secrets)',
    status: 200,
    answer: answers.apiTokenPageAnswer,
  },
  'DELETE /v1/tokens/:id': {
    summary: 'Revoke an API token',
    params: id,
    status: 200,
    answer: answers.apiTokenAnswer,
    errors: ['conflict'],
  },
  'POST /v1/sync/import': {
    summary: 'Apply a vendor bundle (the file as the body); ?dry_run=true shows the diff only',
    query: importQuery,
    body: { mediaType: 'application/octet-stream', description: 'a BPSYNC/1 bundle file' },
    status: 200,
    answer: answers.syncImportAnswer,
    errors: ['bundle_rejected', 'clock_suspect'],
  },
  'POST /v1/sync/export': {
    summary: 'The next signed usage export (X-Bpsync-Seq, X-Bpsync-Manifest-Sha256 headers)',
    status: 200,
    answer: { mediaType: 'application/octet-stream', description: 'a BPSYNC/1 bundle file' },
  },
  'GET /v1/sync/status': {
    summary: 'Last import and export, pinned vendor keys',
    status: 200,
    answer: answers.syncStatusAnswer,
  },
  'GET /v1/audit': {
    summary: 'The audit log in sequence order (cursor = the last seq seen), with the chain head',
    query: auditQuery,
    status: 200,
    answer: answers.auditPageAnswer,
  },
  ...TEMPLATE_ROUTE_DOCS,
};
