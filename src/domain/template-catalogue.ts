/**
 * The template catalogue of the Template Licensing face: the templates this server licenses, each
 * with a name and the current version an install gets. An admin publishes them (PUT
 * /api/v1/marketplace/templates/{id}); they are kept as one small JSON object in the server state
 * (the catalogue is read whole: at most MAX_TEMPLATES), every change audited.
 */
import { AppError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import type { Store } from './store.ts';
import type { Actor } from './types.ts';

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

/** The server_state key the catalogue is kept under (one small JSON object, by template id). */
const CATALOGUE_KEY = 'template_catalogue';
/** The most templates one server's catalogue holds (the catalogue is read whole per request). */
export const MAX_TEMPLATES = 500;

type StoredTemplate = Omit<Template, 'id'>;

/** The catalogue service. Besides the codes each function lists, a write may fail in the store. */
export function createTemplateCatalogue({ store, clock }: { store: Store; clock: Clock }) {
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

    /** One template of the catalogue, or undefined. Throws nothing. */
    findTemplate(id: string): Template | undefined {
      const t = readCatalogue()[id];
      return t === undefined ? undefined : { id, ...t };
    },

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
  };
}
