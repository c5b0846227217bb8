/**
 * Template Licensing: the marketplace face's rules over the same core. Organizations are tenants,
 * licenses are entitlements whose product is the template, seats are named seats, dashboards are
 * installations of the `dashboards` quota. What this module adds is only what the core does not
 * have: the template catalogue (template-catalogue.ts), the term of a purchase, which license of
 * an organization an install draws on, and the seed's permission rule. Every write goes through the entitlement,
 * seat and quota services, which own their rules and audit rows.
 */
import { AppError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import type { Store } from './store.ts';
import type { Actor, Entitlement, Installation, Page, Policy, QuotaState } from './types.ts';
import { hasNamedSeats } from './types.ts';
import { addMonths, type EntitlementService } from './entitlements.ts';
import { seatSubjectType } from './seat-rules.ts';
import { refusalReason } from './lease-rules.ts';
import type { QuotaService } from './quotas.ts';
import type { LeaseService } from './leases.ts';
import { tokenInForce } from './api-tokens.ts';
import { subjectKey } from '../subjects.ts';
import { createTemplateCatalogue } from './template-catalogue.ts';

export type { Template, TemplateInput } from './template-catalogue.ts';

/** A purchase (POST /api/v1/marketplace/templates/{id}/licenses), its policy already normalised. */
export interface PurchaseInput {
  organizationId: string;
  policy: Policy;
  /** The term, whole months from now; the marketplace's licenses run 12. */
  periodMonths: number;
}

/** An install of a template (POST /api/v1/organizations/{org}/templates/{id}/install). */
export interface TemplateInstallInput {
  name: string;
  /** The template's variables (the seed's company_name, primary_color, …): a JSON object. */
  variables: Record<string, unknown>;
  /** The version to install; the template's current one when absent. */
  version?: string | undefined;
  principalId?: string | undefined;
  /** The Idempotency-Key header: a retry answers the dashboard the first request made. */
  idempotencyKey?: string | undefined;
}

/** The seed's entitlements check on a license. */
export interface InstallCheck {
  canInstall: boolean;
  /** Units of the `dashboards` quota left (0 when the license has no such quota). */
  remainingDashboards: number;
  /** Seats left, or null when the license has no seat limit. */
  remainingSeats: number | null;
  /** Why not, when canInstall is false: an error code (`entitlement_inactive`, `quota_exhausted`). */
  reason: string | null;
}

/** The quota a template install consumes. */
export const DASHBOARDS = 'dashboards';

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

/** The term of a purchase when none is asked: the seed's example runs a year. */
export const PURCHASE_TERM_MONTHS = 12;

/**
 * The Template Licensing service. Besides the codes each function lists, a write may fail in the
 * store (busy, full or read-only disk).
 */
export function createTemplateService({
  store,
  clock,
  entitlements,
  quotas,
  leases,
}: {
  store: Store;
  clock: Clock;
  entitlements: EntitlementService;
  quotas: QuotaService;
  leases: LeaseService;
}) {
  const catalogue = createTemplateCatalogue({ store, clock });
  /** The products that are templates: a license is an entitlement for one of them. */
  const templateIds = () => catalogue.catalogue().map((t) => t.id);

  /**
   * A license of an organization: an entitlement of it whose product is a template. Another
   * organization's, or an entitlement of another product (made through /v1), is answered as a
   * missing one, as dashboard() does for dashboards.
   */
  function license(organizationId: string, licenseId: string): Entitlement {
    const e = store.entitlements.get(licenseId);
    if (!e || e.tenantId !== organizationId || !templateIds().includes(e.productId))
      throw new AppError('not_found', `no license ${licenseId} in organization ${organizationId}`);
    return e;
  }

  /** Is this principal id an API token that administers the organization? */
  function organizationAdmin(principalId: string, organizationId: string): boolean {
    const t = store.apiTokens.get(principalId);
    if (!t || !tokenInForce(t, clock.now())) return false;
    return t.role === 'admin' || (t.role === 'tenant_admin' && t.tenantId === organizationId);
  }

  /** The license's `dashboards` quota (limit 0 when its policy names none). */
  function dashboards(e: Entitlement): QuotaState {
    return (
      quotas.states(e).find((q) => q.quota === DASHBOARDS) ?? {
        quota: DASHBOARDS,
        limit: 0,
        used: 0,
        remaining: 0,
      }
    );
  }

  /** A dashboard of the organization: another organization's is answered as a missing one. */
  function dashboard(organizationId: string, id: string): Installation {
    const missing = () =>
      new AppError('not_found', `no dashboard ${id} in organization ${organizationId}`);
    let i: Installation;
    try {
      i = quotas.get(id);
    } catch (err) {
      if (err instanceof AppError && err.code === 'not_found') throw missing();
      throw err;
    }
    const e = store.entitlements.get(i.entitlementId);
    // Only a template license's dashboards are this face's: a `dashboards` installation made
    // through /v1 on another product's entitlement is not a dashboard of a template.
    if (
      i.quota !== DASHBOARDS ||
      e?.tenantId !== organizationId ||
      !templateIds().includes(e.productId)
    )
      throw missing();
    return i;
  }

  return {
    ...catalogue,

    /** The license's `dashboards` quota: limit, used, remaining. Throws nothing. */
    dashboards,

    /**
     * The seed's entitlements check: could a dashboard be installed on this license now (the quota
     * service's canInstall, the rules install applies), with the dashboards and seats left.
     * `reason` speaks /v1 check's words (refusalReason): null, the inactive status (`expired`,
     * `suspended`, …), `clock_suspect` or `quota_exhausted`. Throws nothing.
     */
    installCheck(e: Entitlement): InstallCheck {
      const d = dashboards(e);
      const refusal = quotas.canInstall(e, DASHBOARDS);
      // A policy without a dashboards quota has none to give (limit 0, as dashboards() says).
      const reason =
        refusal === null
          ? null
          : refusal.code === 'invalid_request'
            ? 'quota_exhausted'
            : refusalReason(refusal);
      return {
        canInstall: reason === null,
        remainingDashboards: d.remaining,
        remainingSeats: leases.check(e).remainingSeats,
        reason,
      };
    },

    /**
     * Installs a template for an organization: records a dashboard (an installation of the
     * `dashboards` quota, metadata `{template_id, variables}`, the version asked or the template's
     * current one) on one of the organization's licenses for the template. The license drawn on:
     * among those whose policy has a `dashboards` quota (all of them when none has), the one whose
     * term ends last first (a dashboard outlives the license it was made on only read-only), then
     * the newest; the first that takes it wins. When none does, the refusal of the most useful one
     * is thrown: `quota_exhausted` before the others. The quota service makes it exact and
     * idempotent; an Idempotency-Key is looked up on all the organization's licenses for the
     * template first, and the license that holds it answers (a retry never makes a second one).
     *
     * @throws AppError `not_found` (no such template, or no license for it in the organization);
     *   `invalid_request` (a bad field; a license without a dashboards quota);
     *   `entitlement_inactive`; `quota_exhausted`; `conflict` (the idempotency key made another
     *   dashboard)
     */
    install(
      organizationId: string,
      templateId: string,
      input: TemplateInstallInput,
      actor: Actor,
    ): { installation: Installation; created: boolean } {
      const t = catalogue.template(templateId);
      const all = store.entitlements.candidates(organizationId, templateId);
      if (all.length === 0)
        throw new AppError(
          'not_found',
          `no license for template ${templateId} in organization ${organizationId}`,
          {},
          'purchase one: POST /api/v1/marketplace/templates/{template_id}/licenses',
        );
      // The key names one dashboard in the organization, not per license: a retry after another
      // purchase (which may end later, so be tried first) answers the dashboard it made.
      const key = input.idempotencyKey ?? null;
      const keyed =
        key === null ? undefined : all.find((e) => store.installations.byKey(e.id, key));
      const metered = all.filter((e) => Object.hasOwn(e.policy.quotas ?? {}, DASHBOARDS));
      // candidates() orders by end of term, soonest first, then age: reversed, the last to end.
      const order = keyed ? [keyed] : (metered.length > 0 ? metered : all).slice().reverse();
      let best: AppError | undefined;
      for (const e of order) {
        try {
          return quotas.install(
            e.id,
            {
              quota: DASHBOARDS,
              name: input.name,
              metadata: { template_id: templateId, variables: input.variables },
              version: input.version ?? t.version,
              principalId: input.principalId ?? null,
              idempotencyKey: input.idempotencyKey ?? null,
            },
            actor,
          );
        } catch (err) {
          const next =
            err instanceof AppError &&
            (err.code === 'quota_exhausted' || err.code === 'entitlement_inactive');
          if (!next) throw err;
          if (best === undefined || (err.code === 'quota_exhausted' && best.code !== err.code))
            best = err;
        }
      }
      // The core's "remove one" names no route of this face: say which one uninstalls.
      if (best!.code === 'quota_exhausted') {
        const { entitlement_id, used, limit } = best!.details;
        throw new AppError(
          'quota_exhausted',
          `${String(entitlement_id)} uses ${String(used)} of ${String(limit)} dashboards; uninstall one (DELETE /api/v1/organizations/${organizationId}/dashboards/{dashboard_id}) to install another`,
          best!.details,
        );
      }
      throw best!;
    },

    /**
     * A page of the organization's dashboards (installations of the `dashboards` quota on its
     * licenses, i.e. entitlements whose product is a template of the catalogue), in the order they
     * were made. A `dashboards` installation made through /v1 on another product's entitlement is
     * not listed: it is no template's.
     *
     * @throws AppError `invalid_request` (a cursor this list did not give out)
     */
    installed(
      organizationId: string,
      cursor: string | undefined,
      limit?: number,
    ): Page<Installation> {
      return quotas.list(
        { tenant: organizationId, quota: DASHBOARDS, productIds: templateIds() },
        cursor,
        limit,
      );
    },

    /**
     * The seed's manual update: records the version a dashboard runs now (the quota service's
     * setVersion: only while its license is active).
     *
     * @throws AppError `not_found` (no such dashboard in the organization); `invalid_request`;
     *   `entitlement_inactive`
     */
    updateDashboard(
      organizationId: string,
      dashboardId: string,
      version: string,
      actor: Actor,
    ): Installation {
      const i = dashboard(organizationId, dashboardId);
      return quotas.setVersion(i.id, version, actor);
    },

    /**
     * Uninstalls a dashboard: its `dashboards` unit is returned to its license (the quota
     * service's remove, which writes the audit row). What the full quota's error asks for.
     *
     * @throws AppError `not_found` (no such dashboard in the organization)
     */
    removeDashboard(organizationId: string, dashboardId: string, actor: Actor): Installation {
      const i = dashboard(organizationId, dashboardId);
      return quotas.remove(i.entitlementId, i.id, actor);
    },

    /**
     * A purchase: a new entitlement for the organization (tenant) and the template (product),
     * valid from now for `periodMonths` months. The entitlement service's create rules apply.
     *
     * @throws AppError `not_found` (no such template); `forbidden` (manual provisioning closed)
     */
    purchase(templateId: string, input: PurchaseInput, actor: Actor): Entitlement {
      catalogue.template(templateId);
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
