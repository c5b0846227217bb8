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
  leaseInstanceSchema,
  leaseRequestSchema,
  policySchema,
  renewSchema,
  seatAssignSchema,
  seatBulkSchema,
  installationCreateSchema,
  installationPatchSchema,
  timestamp,
  tokenCreateSchema,
} from '../../schemas.ts';
import { ROUTES, type RouteKey } from '../permissions.ts';
import * as answers from './answers.ts';
import * as face from './template-answers.ts';
import {
  installSchema,
  updateTemplateSchema,
  licensePatchSchema,
  purchaseSchema,
  templatePublishSchema,
} from '../routes/template/schemas.ts';
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
  InstallationCreate: installationCreateSchema,
  InstallationPatch: installationPatchSchema,
  TokenCreate: tokenCreateSchema,
  LeaseRequest: leaseRequestSchema,
  LeaseId: leaseIdSchema,
  LeaseInstance: leaseInstanceSchema,
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
  Installation: answers.installationAnswer,
  InstallationPage: answers.installationPageAnswer,
  SubjectStatus: answers.subjectStatusAnswer,
  Keys: answers.keysAnswer,
  IssuedLease: answers.issuedLeaseAnswer,
  ReleasedLease: answers.releasedLeaseAnswer,
  Lease: answers.leaseAnswer,
  LeasePage: answers.leasePageAnswer,
  ApiToken: answers.apiTokenAnswer,
  Whoami: answers.whoamiAnswer,
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
  // The Template Licensing face (/api/v1).
  TemplatePublish: templatePublishSchema,
  TemplatePurchase: purchaseSchema,
  LicensePatch: licensePatchSchema,
  Template: face.templateAnswer,
  TemplateList: face.templateListAnswer,
  License: face.licenseAnswer,
  LicensePermission: face.permissionAnswer,
  TemplateInstall: installSchema,
  TemplateUpdate: updateTemplateSchema,
  Dashboard: face.dashboardAnswer,
  DashboardPage: face.dashboardPageAnswer,
  InstallCheck: face.installCheckAnswer,
  TemplateUsage: face.templateUsageAnswer,
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

/** Turns zod schemas into the document's JSON Schema: named ones as $refs, others inline. */
interface Converter {
  /** `{ $ref }` to a schema of COMPONENTS; throws for any other (a bug the test catches). */
  ref(schema: z.ZodType, where: string): Json;
  /** The schema itself, for path and query parameters. */
  inline(schema: z.ZodType): Json;
  /** components.schemas: every schema of COMPONENTS by name. */
  components(): Record<string, Json>;
}

function converter(): Converter {
  const registry = z.registry<{ id?: string; description?: string; format?: string }>();
  // The routes parse times through a pipe; its input side alone would say only "a string".
  registry.add(timestamp, {
    format: 'date-time',
    description: 'RFC 3339 with an offset, such as 2024-01-15T11:30:00Z',
  });
  const names = new Map<z.ZodType, string>();
  for (const [name, schema] of Object.entries(COMPONENTS)) {
    registry.add(schema, { id: name });
    names.set(schema, name);
  }
  // Requests as the routes parse them (a defaulted field is optional); answers have no
  // transforms, so their input is their output. A schema JSON Schema cannot express throws.
  const options = { io: 'input', metadata: registry, target: 'draft-2020-12' } as const;
  const bare = ({ $schema: _s, $id: _i, ...rest }: Json) => rest;
  return {
    ref(schema, where) {
      const name = names.get(schema);
      if (name === undefined) throw new Error(`${where}: the schema is not in COMPONENTS`);
      return { $ref: REF(name) };
    },
    inline: (schema) => bare(z.toJSONSchema(schema, options) as Json),
    components() {
      const converted = z.toJSONSchema(registry, { ...options, uri: REF }).schemas;
      return Object.fromEntries(Object.entries(converted).map(([k, v]) => [k, bare(v as Json)]));
    },
  };
}

const REQUEST_ID = { 'X-Request-Id': { $ref: '#/components/headers/X-Request-Id' } };

/** The error answers of a route, one per status, each naming its codes (x-error-codes). */
function errorResponses(key: RouteKey | PublicRoute, doc: RouteDoc): Record<string, Json> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of errorCodesOf(key, doc))
    byStatus.set(ERROR_STATUS[code], [...(byStatus.get(ERROR_STATUS[code]) ?? []), code]);
  const out: Record<string, Json> = {};
  for (const [status, codes] of byStatus) {
    out[status] = {
      description: codes.map((c) => `\`${c}\`: ${ERROR_DESCRIPTIONS[c]}`).join('; '),
      headers: {
        ...REQUEST_ID,
        ...(status === 503 || status === 507
          ? { 'Retry-After': { $ref: '#/components/headers/Retry-After' } }
          : {}),
      },
      content: { 'application/json': { schema: { $ref: REF('Error') } } },
      'x-error-codes': codes,
    };
  }
  return out;
}

/** One route's operation object: permission, parameters, body, answers. */
function operationOf(key: RouteKey | PublicRoute, doc: RouteDoc, convert: Converter): Json {
  const [method, path] = key.split(' ') as [string, string];
  const content = (a: z.ZodType | RawAnswer, where: string) =>
    a instanceof z.ZodType
      ? { 'application/json': { schema: convert.ref(a, where) } }
      : { [a.mediaType]: { schema: { type: 'string', description: a.description } } };

  const parameters: Json[] = [];
  for (const [name, schema] of Object.entries(doc.params ?? {}))
    parameters.push({ name, in: 'path', required: true, schema: convert.inline(schema) });
  if (doc.query) {
    const q = convert.inline(doc.query) as {
      properties?: Record<string, Json>;
      required?: string[];
    };
    for (const [name, schema] of Object.entries(q.properties ?? {}))
      parameters.push({ name, in: 'query', required: q.required?.includes(name) ?? false, schema });
  }

  // The error answers first: a status the route answers with a body of its own (readyz's 503)
  // replaces the envelope's.
  const responses: Record<string, Json> = {
    ...errorResponses(key, doc),
    [doc.status]: {
      description: doc.summary,
      headers: REQUEST_ID,
      content: content(doc.answer, key),
    },
  };
  for (const [status, schema] of Object.entries(doc.alsoAnswers ?? {}))
    responses[status] = {
      description: `${doc.summary} (not ready)`,
      headers: REQUEST_ID,
      content: content(schema, key),
    };

  const rule = key in ROUTES ? ROUTES[key as RouteKey] : undefined;
  return {
    operationId:
      method.toLowerCase() +
      path.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c?: string) => (c ?? '').toUpperCase()),
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
}

/**
 * Builds the document (about 45 ms). Throws (a bug, caught by test/http/openapi.test.ts) when a
 * route's body or answer schema is not among COMPONENTS, or a schema has no JSON Schema form.
 */
export function buildOpenApi(): Json {
  const convert = converter();
  const paths: Record<string, Record<string, Json>> = {};
  for (const [key, doc] of Object.entries(ROUTE_DOCS) as Array<
    [RouteKey | PublicRoute, RouteDoc]
  >) {
    const [method, path] = key.split(' ') as [string, string];
    (paths[path.replace(/:([A-Za-z_]+)/g, '{$1}')] ??= {})[method.toLowerCase()] = operationOf(
      key,
      doc,
      convert,
    );
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
      schemas: convert.components(),
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
