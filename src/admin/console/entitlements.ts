/// <reference lib="dom" />
/**
 * The entitlements list: one page at a time through the API's cursor (the server may hold
 * 100,000; only the page shown is loaded), searched by id prefix, tenant, product and status
 * through the list route's filters; and the form that creates one or edits its policy and term.
 */
import type { EntitlementFilter, EntitlementWire } from './api.ts';
import { badge, byId, table } from './dom.ts';
import { api, clear, report } from './session.ts';

const PAGE_SIZE = 50;
/** Cursors of the pages before the one shown (the first page's is undefined). */
let cursors: Array<string | undefined> = [];
let cursor: string | undefined;
let next: string | null = null;
let shown: EntitlementWire[] = [];
let openId: string | null = null;
/** The entitlement the form edits; null: the form creates one. */
let editing: EntitlementWire | null = null;
let onOpen: (id: string) => void = () => {};
let onSaved: (e: EntitlementWire) => void = () => {};

const input = (id: string) => byId<HTMLInputElement>(id);

function filter(): EntitlementFilter {
  return {
    id_prefix: input('f-id').value.trim(),
    tenant_id: input('f-tenant').value.trim(),
    product_id: input('f-product').value.trim(),
    status: byId<HTMLSelectElement>('f-status').value,
  };
}

/** Shows the page at `cursor` again (after a change, or to refresh). */
export async function reloadList(): Promise<void> {
  clear('ent-err');
  try {
    const page = await api.entitlements(filter(), cursor, PAGE_SIZE);
    shown = page.data;
    next = page.next_cursor;
    render();
  } catch (err) {
    report('ent-err', err);
  }
}

function render(): void {
  const t = table<EntitlementWire>(
    shown,
    [
      ['id', (e) => e.entitlement_id],
      ['tenant', (e) => e.tenant_id],
      ['product', (e) => e.product_id],
      ['type', (e) => e.policy_json.type],
      ['seats', (e) => e.policy_json.max_seats ?? '∞'],
      ['status', (e) => badge(e.status)],
      ['ends', (e) => e.ends_at],
      ['source', (e) => e.source],
    ],
    (e) => {
      openId = e.entitlement_id;
      markOpen();
      onOpen(e.entitlement_id);
    },
    'no entitlement matches',
  );
  byId('ents').replaceChildren(t);
  markOpen();
  const n = cursors.length;
  const first = n * PAGE_SIZE + (shown.length ? 1 : 0);
  byId('page-info').textContent =
    `page ${n + 1}: ${first}–${n * PAGE_SIZE + shown.length}${next ? '' : ' (last page)'}`;
  byId<HTMLButtonElement>('prev').disabled = n === 0;
  byId<HTMLButtonElement>('first').disabled = n === 0;
  byId<HTMLButtonElement>('next').disabled = next === null;
}

function markOpen(): void {
  const rows = byId('ents').querySelectorAll('tr.pick');
  rows.forEach((tr, i) =>
    tr.classList.toggle('open', shown[i]?.entitlement_id === openId && openId !== null),
  );
}

function search(): void {
  cursors = [];
  cursor = undefined;
  void reloadList();
}

/** Opens the form: empty for a new entitlement, or filled with `e`'s policy and term to edit. */
export function openForm(e: EntitlementWire | null): void {
  editing = e;
  clear('ent-form-err');
  byId('ent-form').hidden = false;
  byId('ent-form-title').textContent = e ? `Edit ${e.entitlement_id}` : 'New entitlement';
  input('e-tenant').value = e?.tenant_id ?? '';
  input('e-product').value = e?.product_id ?? '';
  // Tenant and product are fixed once made: shown, not editable.
  input('e-tenant').disabled = e !== null;
  input('e-product').disabled = e !== null;
  byId<HTMLTextAreaElement>('e-policy').value = JSON.stringify(
    e?.policy_json ?? { type: 'concurrent', max_seats: 10 },
  );
  input('e-starts').value = e?.starts_at ?? '';
  input('e-ends').value = e?.ends_at ?? '';
  byId('ent-form').scrollIntoView({ block: 'start' });
  (e ? byId('e-policy') : input('e-tenant')).focus();
}

async function save(): Promise<void> {
  clear('ent-form-err');
  let policy: unknown;
  try {
    policy = JSON.parse(byId<HTMLTextAreaElement>('e-policy').value);
  } catch {
    byId('ent-form-err').textContent = 'policy: not valid JSON';
    return;
  }
  // Blank fields are left out: the API names what is missing ("starts_at is required").
  const fields: Record<string, unknown> = { policy_json: policy };
  const put = (k: string, id: string) => {
    const v = input(id).value.trim();
    if (v) fields[k] = v;
  };
  put('starts_at', 'e-starts');
  put('ends_at', 'e-ends');
  try {
    let saved: EntitlementWire & { warnings?: string[] };
    if (editing) saved = await api.updateEntitlement(editing.entitlement_id, fields);
    else {
      put('tenant_id', 'e-tenant');
      put('product_id', 'e-product');
      saved = await api.createEntitlement(fields);
    }
    byId('ent-form').hidden = true;
    if (saved.warnings?.length) byId('ent-err').textContent = saved.warnings.join('\n');
    openId = saved.entitlement_id;
    await reloadList();
    onSaved(saved);
  } catch (err) {
    report('ent-form-err', err);
  }
}

/** Wires the list's controls; `open` shows one entitlement, `saved` after a create or edit. */
export function initEntitlements(
  open: (id: string) => void,
  saved: (e: EntitlementWire) => void,
): void {
  onOpen = open;
  onSaved = saved;
  byId('search').addEventListener('click', search);
  for (const id of ['f-id', 'f-tenant', 'f-product'])
    input(id).addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') search();
    });
  byId('f-status').addEventListener('change', search);
  byId('next').addEventListener('click', () => {
    if (next === null) return;
    cursors.push(cursor);
    cursor = next;
    void reloadList();
  });
  byId('prev').addEventListener('click', () => {
    if (!cursors.length) return;
    cursor = cursors.pop();
    void reloadList();
  });
  byId('first').addEventListener('click', search);
  byId('new-ent').addEventListener('click', () => openForm(null));
  byId('e-save').addEventListener('click', () => void save());
  byId('e-cancel').addEventListener('click', () => {
    byId('ent-form').hidden = true;
  });
}
