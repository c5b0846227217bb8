/**
 * The OpenAPI rows of the Template Licensing face (/api/v1/...), spread into ROUTE_DOCS
 * (routes.ts): what each route parses and answers, and the error codes peculiar to it.
 */
import type { ErrorCode } from '../../errors.ts';
import type { RouteKey } from '../permissions.ts';
import {
  identifier,
  renewSchema,
  seatAssignSchema,
  seatBulkSchema,
  seatListQuerySchema,
} from '../../schemas.ts';
import {
  installedQuerySchema,
  installSchema,
  updateTemplateSchema,
  licensePatchSchema,
  permissionQuerySchema,
  purchaseSchema,
  templatePublishSchema,
} from '../routes/template/schemas.ts';
import * as answers from './answers.ts';
import * as face from './template-answers.ts';
import type { RouteDoc } from './routes.ts';

/** The face's routes: the rows of ROUTES under /api/v1. */
export type TemplateRoute = Extract<RouteKey, `${string} /api/v1/${string}`>;

const template = { template_id: identifier };
const license = { org: identifier, license_id: identifier };
const licenseWrite: ErrorCode[] = ['conflict', 'managed_by_bundle'];
const seatWrite: ErrorCode[] = ['conflict', 'seats_exhausted', 'entitlement_inactive'];

export const TEMPLATE_ROUTE_DOCS: Record<TemplateRoute, RouteDoc> = {
  'GET /api/v1/marketplace/templates': {
    summary: 'Template Licensing: the template catalogue (the templates this server licenses)',
    status: 200,
    answer: face.templateListAnswer,
  },
  'GET /api/v1/marketplace/templates/:template_id': {
    summary: 'Template Licensing: one template (name, description, current version)',
    params: template,
    status: 200,
    answer: face.templateAnswer,
  },
  'PUT /api/v1/marketplace/templates/:template_id': {
    summary: 'Template Licensing: publish a template or a new current version (the catalogue)',
    params: template,
    body: templatePublishSchema,
    status: 200,
    answer: face.templateAnswer,
    errors: ['conflict'],
  },
  'POST /api/v1/marketplace/templates/:template_id/licenses': {
    summary:
      'Template Licensing: purchase a license (an entitlement of the organization for the template, 12 months from now)',
    params: template,
    body: purchaseSchema,
    status: 201,
    answer: face.licenseAnswer,
    errors: ['conflict', 'forbidden'],
  },
  'GET /api/v1/organizations/:org/licenses/:license_id/seats': {
    summary: 'Template Licensing: the license’s seats (cursor paged)',
    params: license,
    query: seatListQuerySchema,
    status: 200,
    answer: answers.seatPageAnswer,
    errors: ['conflict'],
  },
  'POST /api/v1/organizations/:org/licenses/:license_id/seats': {
    summary: 'Template Licensing: assign a seat ({"principal_id"})',
    params: license,
    body: seatAssignSchema,
    status: 201,
    answer: answers.seatAnswer,
    errors: seatWrite,
  },
  'POST /api/v1/organizations/:org/licenses/:license_id/seats/bulk': {
    summary: 'Template Licensing: assign many seats ({"principal_ids"}): all or nothing',
    params: license,
    body: seatBulkSchema,
    status: 201,
    answer: answers.seatsAssignedAnswer,
    errors: seatWrite,
  },
  'DELETE /api/v1/organizations/:org/licenses/:license_id/seats/:seat_id': {
    summary: 'Template Licensing: revoke a seat',
    params: { ...license, seat_id: identifier },
    status: 200,
    answer: answers.seatRevokedAnswer,
    errors: ['conflict'],
  },
  'PATCH /api/v1/organizations/:org/licenses/:license_id': {
    summary: 'Template Licensing: turn auto_update on or off',
    params: license,
    body: licensePatchSchema,
    status: 200,
    answer: face.licenseAnswer,
    errors: licenseWrite,
  },
  'POST /api/v1/organizations/:org/licenses/:license_id/renew': {
    summary:
      'Template Licensing: renew for period_months (from the end of term, or now once lapsed)',
    params: license,
    body: renewSchema,
    status: 200,
    answer: face.licenseAnswer,
    errors: licenseWrite,
  },
  'GET /api/v1/organizations/:org/licenses/:license_id/usage': {
    summary:
      'Template Licensing: 30-day usage (seats; dashboards used and limit; views = lease grants, unique users)',
    params: license,
    status: 200,
    answer: face.templateUsageAnswer,
  },
  'GET /api/v1/organizations/:org/licenses/:license_id/entitlements': {
    summary: 'Template Licensing: could a dashboard be installed now; dashboards and seats left',
    params: license,
    status: 200,
    answer: face.installCheckAnswer,
  },
  'POST /api/v1/organizations/:org/templates/:template_id/install': {
    summary:
      'Template Licensing: install a template (a dashboard: one unit of the license’s dashboards quota); Idempotency-Key header honoured (a retry answers 200)',
    params: { org: identifier, template_id: identifier },
    body: installSchema,
    status: 201,
    answer: face.dashboardAnswer,
    alsoAnswers: { 200: face.dashboardAnswer },
    errors: ['conflict', 'quota_exhausted', 'entitlement_inactive'],
  },
  'GET /api/v1/organizations/:org/installed-templates': {
    summary: 'Template Licensing: the organization’s dashboards (cursor paged)',
    params: { org: identifier },
    query: installedQuerySchema,
    status: 200,
    answer: face.dashboardPageAnswer,
  },
  'POST /api/v1/organizations/:org/dashboards/:dashboard_id/update-template': {
    summary: 'Template Licensing: manual update: record the version a dashboard runs',
    params: { org: identifier, dashboard_id: identifier },
    body: updateTemplateSchema,
    status: 200,
    answer: face.dashboardAnswer,
    errors: ['entitlement_inactive'],
  },
  'DELETE /api/v1/organizations/:org/dashboards/:dashboard_id': {
    summary:
      'Template Licensing: uninstall a dashboard: its unit of the license’s dashboards quota is free again',
    params: { org: identifier, dashboard_id: identifier },
    status: 200,
    answer: face.dashboardAnswer,
  },
  'GET /api/v1/organizations/:org/licenses/:license_id/permissions': {
    summary:
      'Template Licensing: may a principal use or manage the license (use = seat holder or organization admin; manage = organization admin)',
    params: license,
    query: permissionQuerySchema,
    status: 200,
    answer: face.permissionAnswer,
  },
};
