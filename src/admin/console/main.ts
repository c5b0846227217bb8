/// <reference lib="dom" />
/**
 * The admin console: the script of the admin page (src/admin/page.tsx), bundled at build time
 * into one inline script (scripts/admin-console.mjs) whose hash the page's content security policy
 * names. It holds no data: every figure comes from the admin API (./api.ts) with the token the
 * admin pastes (./session.ts). This module signs in and out, says who is signed in and how the
 * server is, shows only the sections and controls the role may use, and wires the screens:
 * ./entitlements.ts (list, search, form), ./detail.ts (one entitlement), ./sync.ts, ./admin.ts
 * (tokens, audit).
 *
 * The DOM library references (in these modules) are the only ones in the tree: the console's
 * modules are its only browser code.
 */
import { initAdmin, loadAudit, loadTokens } from './admin.ts';
import { ApiError } from './api.ts';
import { initDetail, openEntitlement } from './detail.ts';
import { byId } from './dom.ts';
import { initEntitlements, reloadList } from './entitlements.ts';
import { api, banner, can, canGlobal, hasToken, setToken, setWho, whoami } from './session.ts';
import { initSync, loadSync } from './sync.ts';

/** Shows the signed-out page (no console, the token field). */
function signedOut(): void {
  setWho(null);
  byId('console').hidden = true;
  byId('signed-out').hidden = false;
  byId('signin-box').hidden = false;
  byId('signout').hidden = true;
  byId('who').textContent = '';
}

/**
 * Hides every control whose `data-need` permission the role lacks (a reader sees no writes), and
 * those marked `data-global` (routes spanning every tenant) from a token limited to one tenant.
 */
function applyRole(): void {
  for (const e of document.querySelectorAll<HTMLElement>('[data-need]')) {
    const need = e.dataset.need ?? '';
    e.hidden = !('global' in e.dataset ? canGlobal(need) : can(need));
  }
}

/** The server's readiness and clock in the header, refreshed every 30 s while signed in. */
async function showHealth(): Promise<void> {
  const status = await api.health();
  const w = whoami();
  const clock = w ? ` · server clock ${w.server_time}${w.clock_suspect ? ' (SUSPECT)' : ''}` : '';
  byId('health').textContent = `server: ${status}${clock}`;
  if (status === 'not answering')
    banner(`The server is not answering (${location.origin}). Is it running? Then reload.`);
}

async function start(): Promise<void> {
  banner();
  let w;
  try {
    w = await api.whoami();
  } catch (err) {
    signedOut();
    if (err instanceof ApiError && err.status === 401) {
      setToken('');
      banner(`That token was refused: ${err.message}. Paste a valid API token (bpls_…).`);
    } else if (err instanceof ApiError && err.status === 0) {
      banner(`The server is not answering (${location.origin}). Is it running? Then reload.`);
    } else banner(err instanceof Error ? err.message : String(err));
    return;
  }
  setWho(w);
  byId('who').textContent =
    `signed in as ${w.name ?? w.token_id} · ${w.role}` +
    (w.tenant_id ? ` · tenant ${w.tenant_id}` : ' · every tenant');
  byId('signin-box').hidden = true;
  byId('signout').hidden = false;
  byId('signed-out').hidden = true;
  byId('console').hidden = false;
  applyRole();
  await Promise.all([
    reloadList(),
    showHealth(),
    canGlobal('read') ? loadSync() : Promise.resolve(),
    canGlobal('tokens') ? loadTokens() : Promise.resolve(),
    canGlobal('audit') ? loadAudit() : Promise.resolve(),
  ]);
}

byId('signin').addEventListener('click', () => {
  const field = byId<HTMLInputElement>('token');
  const t = field.value.trim();
  field.value = '';
  if (!t) return banner('Paste an API token first.');
  setToken(t);
  void start();
});
byId('token').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter') byId('signin').click();
});
byId('signout').addEventListener('click', () => {
  setToken('');
  location.reload();
});

const refresh = (): void => {
  void reloadList();
  if (canGlobal('audit')) void loadAudit();
};
initEntitlements(
  (id) => void openEntitlement(id),
  (e) => {
    void openEntitlement(e.entitlement_id);
    if (canGlobal('audit')) void loadAudit();
  },
);
initDetail(refresh);
initSync(() => {
  refresh();
  void loadSync();
});
initAdmin();
setInterval(() => {
  if (whoami()) void showHealth();
}, 30_000);
if (hasToken()) void start();
else signedOut();
