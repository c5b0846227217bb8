/**
 * The OpenAPI 3.1 document of the HTTP API, generated (never written by hand) from the route table
 * (http/openapi/routes.ts), the permission table (http/permissions.ts), the error table (errors.ts)
 * and the zod schemas themselves through zod's own `z.toJSONSchema()`: request bodies and queries
 * as the routes parse them (`io: 'input'`), answers as answers.ts describes them. Served at
 * `GET /openapi.json` (http/routes/openapi.ts), built once.
 */
import { z } from 'zod';
import { ERROR_DESCRIPTIONS, ERROR_STATUS, type ErrorCode } from '../../errors.ts';
import { VERSION } from '../../version.ts';
import {
  entitlementCreateSchema,
  entitlementUpdateSchema,
  importEnvelopeSchema,
  leaseIdSchema,
  leaseRequestSchema,
  policySchema,
  renewSchema,
  seatAssignSchema,
  seatBulkSchema,
  timestamp,
  tokenCreateSchema,
} from '../../schemas.ts';
import { ROUTES, type RouteKey } from '../permissions.ts';
import * as answers from './answers.ts';
import { ROUTE_DOCS, type PublicRoute, type RawAnswer, type RouteDoc } from './routes.ts';

type Json = Record<string, unknown>;

/** The document's named schemas (components.schemas): every body and JSON answer of ROUTE_DOCS. */
const COMPONENTS: Record<string, z.ZodType> = {
  EntitlementCreate: entitlementCreateSchema,
  EntitlementUpdate: entitlementUpdateSchema,
  PolicyInput: policySchema,
  Renew: renewSchema,
  EntitlementImport: importEnvelopeSchema,
  SeatAssign: seatAssignSchema,
  SeatBulk: seatBulkSchema,
  TokenCreate: tokenCreateSchema,
  LeaseRequest: leaseRequestSchema,
  LeaseId: leaseIdSchema,
  Policy: answers.policyAnswer,
  Entitlement: answers.entitlementAnswer,
  EntitlementDetail: answers.entitlementDetailAnswer,
  EntitlementPage: answers.entitlementPageAnswer,
  ImportResult: answers.importResultAnswer,
  LeaseCheck: answers.leaseCheckAnswer,
  Usage: answers.usageAnswer,
  Seat: answers.seatAnswer,
  SeatPage: answers.seatPageAnswer,
  SeatsAssigned: answers.seatsAssignedAnswer,
  SeatRevoked: answers.seatRevokedAnswer,
  SubjectStatus: answers.subjectStatusAnswer,
  Keys: answers.keysAnswer,
  IssuedLease: answers.issuedLeaseAnswer,
  ReleasedLease: answers.releasedLeaseAnswer,
  Lease: answers.leaseAnswer,
  LeasePage: answers.leasePageAnswer,
  ApiToken: answers.apiTokenAnswer,
  CreatedApiToken: answers.createdApiTokenAnswer,
  ApiTokenPage: answers.apiTokenPageAnswer,
  SyncImportResult: answers.syncImportAnswer,
  SyncStatus: answers.syncStatusAnswer,
  AuditRow: answers.auditRowAnswer,
  AuditPage: answers.auditPageAnswer,
  Health: answers.healthAnswer,
  Ready: answers.readyAnswer,
  OpenApiDocument: answers.anyObject,
  Error: answers.errorAnswer,
};

const REF = (name: string) => `#/components/schemas/${name}`;

/**
 * The error codes a route can answer: those of its shape (`internal` always; `unauthorized` and
 * `forbidden` with a token; `invalid_request` with parameters, a query or a body; a body's cap,
 * deadline and budget; `not_found` for an :id; a write's storage failures and lock wait) and its
 * own (RouteDoc.errors). Sorted by status, then code.
 */
export function errorCodesOf(key: RouteKey | PublicRoute, doc: RouteDoc): ErrorCode[] {
  const codes = new Set<ErrorCode>(['internal', ...(doc.errors ?? [])]);
  const add = (...c: ErrorCode[]) => c.forEach((x) => codes.add(x));
  if (key in ROUTES) add('unauthorized', 'forbidden');
  if (doc.params || doc.query || doc.body) add('invalid_request');
  if (doc.body) add('payload_too_large', 'request_timeout', 'busy');
  if (doc.params) add('not_found');
  if (!key.startsWith('GET ')) add('storage_full', 'storage_unavailable', 'busy');
  const order = Object.keys(ERROR_STATUS) as ErrorCode[];
  return [...codes].sort(
    (a, b) => ERROR_STATUS[a] - ERROR_STATUS[b] || order.indexOf(a) - order.indexOf(b),
  );
}

/**
 * Builds the document. Throws (a bug, caught by test/http/openapi.test.ts) when a route's body or
 * answer schema is not among COMPONENTS.
 */
export function buildOpenApi(): Json {
  const registry = z.registry<{ id?: string; description?: string; format?: string }>();
  registry.add(timestamp, {
    format: 'date-time',
    description: 'RFC 3339 with an offset, such as 2024-01-15T11:30:00Z',
  });
  const names = new Map<z.ZodType, string>();
  for (const [name, schema] of Object.entries(COMPONENTS)) {
    registry.add(schema, { id: name });
    names.set(schema, name);
  }
  const options = {
    io: 'input',
    metadata: registry,
    target: 'draft-2020-12',
    unrepresentable: 'any',
  } as const;
  const converted = z.toJSONSchema(registry, { ...options, uri: REF }).schemas;
  const schemas: Record<string, Json> = {};
  for (const [name, s] of Object.entries(converted)) {
    const { $schema: _s, $id: _i, ...rest } = s as Json;
    schemas[name] = rest;
  }

  const ref = (schema: z.ZodType, where: string) => {
    const name = names.get(schema);
    if (name === undefined) throw new Error(`${where}: the schema is not in COMPONENTS`);
    return { $ref: REF(name) };
  };
  const content = (a: z.ZodType | RawAnswer, where: string) =>
    a instanceof z.ZodType
      ? { 'application/json': { schema: ref(a, where) } }
      : { [a.mediaType]: { schema: { type: 'string', description: a.description } } };
  const inline = (schema: z.ZodType) => {
    const { $schema: _s, ...rest } = z.toJSONSchema(schema, options) as Json;
    return rest;
  };
  const requestId = { $ref: '#/components/headers/X-Request-Id' };

  const paths: Record<string, Record<string, Json>> = {};
  for (const [key, doc] of Object.entries(ROUTE_DOCS) as Array<
    [RouteKey | PublicRoute, RouteDoc]
  >) {
    const [method, path] = key.split(' ') as [string, string];
    const parameters: Json[] = [];
    for (const [name, schema] of Object.entries(doc.params ?? {}))
      parameters.push({ name, in: 'path', required: true, schema: inline(schema) });
    if (doc.query) {
      const q = inline(doc.query) as { properties?: Record<string, Json>; required?: string[] };
      for (const [name, schema] of Object.entries(q.properties ?? {}))
        parameters.push({
          name,
          in: 'query',
          required: q.required?.includes(name) ?? false,
          schema,
        });
    }
    const responses: Record<string, Json> = {
      [doc.status]: {
        description: doc.summary,
        headers: { 'X-Request-Id': requestId },
        content: content(doc.answer, key),
      },
    };
    for (const [status, schema] of Object.entries(doc.alsoAnswers ?? {}))
      responses[status] = {
        description: `${doc.summary} (not ready)`,
        headers: { 'X-Request-Id': requestId },
        content: content(schema, key),
      };
    const byStatus = new Map<number, ErrorCode[]>();
    for (const code of errorCodesOf(key, doc))
      byStatus.set(ERROR_STATUS[code], [...(byStatus.get(ERROR_STATUS[code]) ?? []), code]);
    for (const [status, codes] of byStatus) {
      if (responses[status]) continue;
      responses[status] = {
        description: codes.map((c) => `\`${c}\`: ${ERROR_DESCRIPTIONS[c]}`).join('; '),
        headers: {
          'X-Request-Id': requestId,
          ...(status === 503 || status === 507
            ? { 'Retry-After': { $ref: '#/components/headers/Retry-After' } }
            : {}),
        },
        content: { 'application/json': { schema: { $ref: REF('Error') } } },
        'x-error-codes': codes,
      };
    }
    const rule = key in ROUTES ? ROUTES[key as RouteKey] : undefined;
    const operation: Json = {
      operationId: `${method.toLowerCase()}${path.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c?: string) => (c ?? '').toUpperCase())}`,
      summary: doc.summary,
      security: rule ? [{ bearer: [] }] : [],
      'x-permission': rule ? rule.permission : 'none',
      ...(rule && 'global' in rule ? { 'x-global': true } : {}),
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(doc.body
        ? { requestBody: { required: true, content: content(doc.body, `${key} body`) } }
        : {}),
      responses,
    };
    const openApiPath = path.replace(/:([A-Za-z_]+)/g, '{$1}');
    (paths[openApiPath] ??= {})[method.toLowerCase()] = operation;
  }

  return {
    openapi: '3.1.1',
    info: {
      title: 'bp-license-server',
      version: VERSION,
      description:
        'The local license server: admin API (bearer API tokens; x-permission names the permission a route needs, x-global marks routes a tenant-scoped token may not call) and the client lease API (no token). Every failure answers the Error envelope; x-error-codes lists the codes of each status. Any route may also answer 431 headers_too_large or 408 request_timeout when the request headers are too large or too slow.',
    },
    paths,
    components: {
      schemas,
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'an API token, bpls_…' },
      },
      headers: {
        'X-Request-Id': {
          description: 'the request id: the caller’s X-Request-Id when sane, else a new req_… id',
          schema: { type: 'string' },
        },
        'Retry-After': {
          description: 'seconds to wait before retrying',
          schema: { type: 'integer', minimum: 0 },
        },
      },
    },
  };
}

let cached: string | undefined;

/** The document as JSON text, built on the first call. */
export function openApiText(): string {
  return (cached ??= JSON.stringify(buildOpenApi()));
}
