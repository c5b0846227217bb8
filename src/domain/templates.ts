/**
 * Template Licensing: the marketplace face's rules over the same core. Organizations are tenants,
 * licenses are entitlements whose product is the template, seats are named seats, dashboards are
 * installations of the `dashboards` quota. What this module adds is only what the core does not
 * have: the template catalogue, the term of a purchase, which license of an organization an
 * install draws on, and the seed's permission rule. Every write goes through the entitlement,
 * seat and quota services, which own their rules and audit rows.
 */
import { AppError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import type { Store } from './store.ts';
import type { Actor, Entitlement, Policy } from './types.ts';
import { hasNamedSeats } from './types.ts';
import { addMonths, type EntitlementService } from './entitlements.ts';
import { seatSubjectType } from './seat-rules.ts';
import { subjectKey } from '../subjects.ts';

/** One template of the catalogue: what the marketplace shows and installs. */
export interface Template {
  /** The template id; licenses for it are entitlements with this product_id. */
  id: string;
  name: string;
  description: string | null;
  /** The current version: what an install gets when it asks for none. */
  version: string;
  /** First published (ms epoch). */
  createdAt: number;
  /** Last changed (ms epoch). */
  updatedAt: number;
}

/** What an admin publishes for a template (PUT /api/v1/marketplace/templates/{id}). */
export interface TemplateInput {
  name: string;
  description?: string | null | undefined;
  version: string;
}

/** A purchase (POST /api/v1/marketplace/templates/{id}/licenses), its policy already normalised. */
export interface PurchaseInput {
  organizationId: string;
  policy: Policy;
  /** The term, whole months from now; the marketplace's licenses run 12. */
  periodMonths: number;
}

/** The seed's two permissions on a license (its SpiceDB `template_license` definition). */
export type LicensePermission = 'use' | 'manage';

/**
 * A permission check's answer. `reason` says which relation granted it (`seat_holder`, the
 * license being organization-wide (`organization_wide`), or `organization_admin`), or
 * `no_relation` when none did.
 */
export interface PermissionCheck {
  allowed: boolean;
  reason: 'seat_holder' | 'organization_wide' | 'organization_admin' | 'no_relation';
}

/** The server_state key the catalogue is kept under (one small JSON object, by template id). */
const CATALOGUE_KEY = 'template_catalogue';
/** The most templates one server's catalogue holds (the catalogue is read whole per request). */
export const MAX_TEMPLATES = 500;
/** The term of a purchase when none is asked: the seed's example runs a year. */
export const PURCHASE_TERM_MONTHS = 12;

type StoredTemplate = Omit<Template, 'id'>;

/**
 * The Template Licensing service. Besides the codes each function lists, a write may fail in the
 * store (busy, full or read-only disk).
 */
export function createTemplateService({
  store,
  clock,
  entitlements,
}: {
  store: Store;
  clock: Clock;
  entitlements: EntitlementService;
}) {
  function readCatalogue(): Record<string, StoredTemplate> {
    const raw = store.state.get(CATALOGUE_KEY);
    return raw === undefined ? {} : (JSON.parse(raw) as Record<string, StoredTemplate>);
  }

  function mustGetTemplate(id: string): Template {
    const t = readCatalogue()[id];
    if (t === undefined)
      throw new AppError(
        'not_found',
        `no template ${id} in the marketplace`,
        {},
        'an admin publishes it first: PUT /api/v1/marketplace/templates/{template_id}',
      );
    return { id, ...t };
  }

  /** A license of an organization: another organization's is answered as a missing one. */
  function license(organizationId: string, licenseId: string): Entitlement {
    const e = store.entitlements.get(licenseId);
    if (!e || e.tenantId !== organizationId)
      throw new AppError('not_found', `no license ${licenseId} in organization ${organizationId}`);
    return e;
  }

  /** Is this principal id an API token that administers the organization? */
  function organizationAdmin(principalId: string, organizationId: string): boolean {
    const t = store.apiTokens.get(principalId);
    if (!t || t.revokedAt !== null) return false;
    if (t.expiresAt !== null && clock.now() >= t.expiresAt) return false;
    return t.role === 'admin' || (t.role === 'tenant_admin' && t.tenantId === organizationId);
  }

  return {
    /** The catalogue, by template id. Throws nothing. */
    catalogue(): Template[] {
      return Object.entries(readCatalogue())
        .map(([id, t]) => ({ id, ...t }))
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    },

    /**
     * One template of the catalogue.
     *
     * @throws AppError `not_found`
     */
    template: mustGetTemplate,

    /**
     * Adds a template to the catalogue, or changes its name, description or current version.
     * Audited (`template.publish`, with the version before and after).
     *
     * @throws AppError `conflict` when the catalogue holds MAX_TEMPLATES already
     */
    publish(
      id: string,
      input: TemplateInput,
      actor: Actor,
    ): { template: Template; created: boolean } {
      return store.tx(() => {
        const all = readCatalogue();
        const before = all[id];
        if (before === undefined && Object.keys(all).length >= MAX_TEMPLATES)
          throw new AppError('conflict', `the catalogue holds ${MAX_TEMPLATES} templates already`);
        const now = clock.now();
        const t: StoredTemplate = {
          name: input.name,
          description: input.description ?? null,
          version: input.version,
          createdAt: before?.createdAt ?? now,
          updatedAt: now,
        };
        all[id] = t;
        store.state.set(CATALOGUE_KEY, JSON.stringify(all));
        store.audit.append({
          at: now,
          actor,
          action: 'template.publish',
          targetType: 'template',
          targetId: id,
          details: { name: t.name, version_before: before?.version ?? null, version: t.version },
        });
        return { template: { id, ...t }, created: before === undefined };
      });
    },

    /**
     * A purchase: a new entitlement for the organization (tenant) and the template (product),
     * valid from now for `periodMonths` months. The entitlement service's create rules apply.
     *
     * @throws AppError `not_found` (no such template); `forbidden` (manual provisioning closed)
     */
    purchase(templateId: string, input: PurchaseInput, actor: Actor): Entitlement {
      mustGetTemplate(templateId);
      const now = clock.now();
      return entitlements.create(
        {
          tenantId: input.organizationId,
          productId: templateId,
          policy: input.policy,
          startsAt: now,
          endsAt: addMonths(now, input.periodMonths),
        },
        actor,
      );
    },

    /**
     * The organization's license by id.
     *
     * @throws AppError `not_found` (no such license, or another organization's)
     */
    license,

    /**
     * Turns auto_update on or off (policy_json.auto_update, through the entitlement service's
     * update: audited, refused for bundle-managed and revoked entitlements).
     *
     * @throws AppError `not_found`; `managed_by_bundle`; `conflict` (revoked)
     */
    setAutoUpdate(licenseId: string, autoUpdate: boolean, actor: Actor): Entitlement {
      // One transaction, so a policy change between the read and the write is not lost.
      return store.tx(() => {
        const e = entitlements.get(licenseId);
        return entitlements.update(
          licenseId,
          { policy: { ...e.policy, auto_update: autoUpdate } },
          actor,
        );
      });
    },

    /**
     * The seed's permission rule on a license: `use` = a seat holder, or an organization admin;
     * `manage` = an organization admin. A license without named seats (unlimited, concurrent) is
     * organization-wide: every principal may use it. An organization admin is an API token, named
     * by its id (`tok_…`), that is in force and either an admin token (every organization) or a
     * tenant_admin token of this organization: the tokens that may manage its seats. The relation
     * only: the license's lifecycle is the entitlements check's business. Throws nothing.
     */
    permission(
      e: Entitlement,
      principalId: string,
      permission: LicensePermission,
    ): PermissionCheck {
      if (permission === 'use') {
        if (!hasNamedSeats(e.policy.type)) return { allowed: true, reason: 'organization_wide' };
        if (store.seats.find(e.id, seatSubjectType(e), subjectKey(principalId)))
          return { allowed: true, reason: 'seat_holder' };
      }
      if (organizationAdmin(principalId, e.tenantId))
        return { allowed: true, reason: 'organization_admin' };
      return { allowed: false, reason: 'no_relation' };
    },
  };
}

export type TemplateService = ReturnType<typeof createTemplateService>;
