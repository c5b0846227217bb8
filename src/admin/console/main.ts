/// <reference lib="dom" />
/**
 * The admin console: the script of the admin page (src/admin/page.tsx), bundled at build time
 * into one inline script (scripts/admin-console.mjs) whose hash the page's content security policy
 * names.
 * It holds no data: every figure comes from the admin API (./api.ts) with the token the admin
 * pastes, kept in sessionStorage for the tab's life.
 *
 * The DOM library references (here and in ./dom.ts) are the only ones in the tree: the console's
 * modules are its only browser code.
 */
import { createApi, type EntitlementWire } from './api.ts';
import { badge, button, byId, el, showError, table } from './dom.ts';

let token = sessionStorage.getItem('bpls_token') || '';
/** The entitlement open in the detail panel. */
let current: string | null = null;
const api = createApi(
  () => token,
  (path, init) => fetch(path, init),
);

async function loadEntitlements(): Promise<void> {
  showError('ent-err');
  try {
    const page = await api.entitlements(byId<HTMLInputElement>('filter').value.trim());
    const box = byId('ents');
    box.replaceChildren(
      table<EntitlementWire>(
        page.data,
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
        (e) => void openEntitlement(e.entitlement_id),
      ),
    );
    if (page.next_cursor)
      box.append(el('p', 'showing the first 200; filter by tenant to narrow', 'muted'));
  } catch (err) {
    showError('ent-err', err);
  }
}

async function openEntitlement(id: string): Promise<void> {
  current = id;
  showError('detail-err');
  byId('detail').hidden = false;
  try {
    const [e, usage, leases] = await Promise.all([
      api.entitlement(id),
      api.usage(id),
      api.leases(id),
    ]);
    byId('detail-title').textContent = `${e.entitlement_id} · ${e.tenant_id} · ${e.product_id}`;
    const kv = byId('detail-kv');
    kv.replaceChildren();
    const add = (k: string, v: string | Node): void => {
      kv.append(el('div', k, 'muted'));
      const d = el('div');
      if (v instanceof Node) d.append(v);
      else d.textContent = v;
      kv.append(d);
    };
    add('status', badge(e.status));
    add('policy', JSON.stringify(e.policy_json));
    add('term', `${e.starts_at} → ${e.ends_at}`);
    const { seats, leases: inForce, activity } = usage;
    add(
      'seats',
      `${seats.assigned} assigned of ${seats.total ?? '∞'}, ${seats.active_30d} active in 30 days`,
    );
    add('leases', `${inForce.active} in force, peak ${inForce.peak_30d} in 30 days`);
    add(
      'activity',
      `${activity.grants_30d} grants, ${activity.denials_30d} denials, ` +
        `${activity.unique_users_30d} unique subjects in 30 days`,
    );
    byId('leases').replaceChildren(
      table(leases.data, [
        ['lease', (l) => l.lease_id],
        ['subject', (l) => `${l.subject_type}:${l.subject_id}`],
        ['expires', (l) => l.expires_at],
        ['', (l) => button('revoke', () => void act(() => api.revokeLease(l.lease_id)))],
      ]),
    );
    const seatsBox = byId('seats');
    if (e.policy_json.type === 'per_user' || e.policy_json.type === 'per_machine') {
      const seats = await api.seats(id);
      seatsBox.replaceChildren(
        table(seats.data, [
          ['seat', (s) => s.seat_id],
          ['subject', (s) => `${s.subject_type}:${s.subject_id}`],
          ['assigned', (s) => s.assigned_at],
          ['by', (s) => s.assigned_by],
          ['', (s) => button('revoke', () => void act(() => api.revokeSeat(id, s.seat_id)))],
        ]),
      );
      byId('seat-form').hidden = false;
    } else {
      seatsBox.replaceChildren(el('p', `no named seats for ${e.policy_json.type}`, 'muted'));
      byId('seat-form').hidden = true;
    }
  } catch (err) {
    showError('detail-err', err);
  }
}

/** Runs a change, then shows everything again (the list, the open entitlement, sync and audit). */
async function act(change: () => Promise<unknown>): Promise<void> {
  showError('detail-err');
  try {
    await change();
    await loadEntitlements();
    if (current) await openEntitlement(current);
    await loadSide();
  } catch (err) {
    showError('detail-err', err);
  }
}

async function loadSide(): Promise<void> {
  try {
    byId('sync').textContent = JSON.stringify(await api.syncStatus(), null, 2);
  } catch (err) {
    byId('sync').textContent = String((err as Error).message);
  }
  try {
    // The log pages by sequence from the start: ask where its head is, then for the last 20 rows.
    const head = (await api.audit(1)).head.seq;
    const a = await api.audit(20, Math.max(0, head - 20));
    byId('audit').replaceChildren(
      table(a.data.slice().reverse(), [
        ['seq', (r) => r.seq],
        ['at', (r) => r.at],
        ['actor', (r) => r.actor],
        ['action', (r) => r.action],
        ['target', (r) => r.target_id],
      ]),
    );
  } catch (err) {
    byId('audit').textContent = String((err as Error).message);
  }
}

async function signIn(): Promise<void> {
  const field = byId<HTMLInputElement>('token');
  token = field.value.trim() || token;
  sessionStorage.setItem('bpls_token', token);
  field.value = '';
  await loadEntitlements();
  await loadSide();
}

byId('signin').addEventListener('click', () => void signIn());
byId('signout').addEventListener('click', () => {
  sessionStorage.removeItem('bpls_token');
  token = '';
  location.reload();
});
byId('reload').addEventListener('click', () => {
  void loadEntitlements();
  void loadSide();
});
byId('filter').addEventListener('change', () => void loadEntitlements());
for (const a of ['suspend', 'resume'] as const)
  byId(a).addEventListener('click', () => {
    const id = current;
    if (id) void act(() => api.lifecycle(id, a));
  });
byId('renew').addEventListener('click', () => {
  const id = current;
  const months = Number(byId<HTMLSelectElement>('months').value);
  if (id) void act(() => api.renew(id, months));
});
byId('assign').addEventListener('click', () => {
  const id = current;
  const subject = byId<HTMLInputElement>('subject').value.trim();
  if (id && subject) void act(() => api.assignSeat(id, subject));
});
if (token) void signIn();
