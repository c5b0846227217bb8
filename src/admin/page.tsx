/**
 * The web admin page: one self-contained HTML page (no external assets, strict CSP) that talks to
 * the admin API with a token the admin pastes. It holds no data itself: every figure comes from
 * the same routes, with the same permissions, as the CLI and scripts use.
 */
import type { Hono } from 'hono';
import { createHash, randomBytes } from 'node:crypto';
import type { AppEnv } from '../http/types.ts';

const STYLE = `
:root { font-family: system-ui, sans-serif; color: #1d232b; background: #f6f7f9; }
body { margin: 0; }
header { background: #1d232b; color: #fff; padding: 12px 20px; display: flex; gap: 16px; align-items: center; }
header h1 { font-size: 16px; margin: 0; font-weight: 600; }
header .sp { flex: 1; }
main { padding: 16px 20px; display: grid; gap: 16px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 12px 16px; }
h2 { font-size: 14px; margin: 0 0 8px; text-transform: uppercase; letter-spacing: .04em; color: #56616e; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #eef0f3; }
th { color: #56616e; font-weight: 600; }
tr.pick { cursor: pointer; }
tr.pick:hover { background: #f0f4ff; }
.status { padding: 1px 6px; border-radius: 8px; font-size: 12px; background: #e8ebef; }
.status.active { background: #dff3e4; } .status.grace { background: #fff1cc; }
.status.suspended, .status.expired, .status.revoked, .status.pending { background: #fbe1e1; }
input, button, select { font: inherit; font-size: 13px; padding: 4px 8px; }
button { cursor: pointer; }
.err { color: #a4161a; font-size: 13px; white-space: pre-wrap; }
.muted { color: #56616e; font-size: 12px; }
.row { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; font-size: 13px; }
`;

// Plain DOM code: every value is set with textContent, never as HTML.
const SCRIPT = `
const $ = (s) => document.querySelector(s);
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = String(text); if (cls) e.className = cls; return e; };
let token = sessionStorage.getItem('bpls_token') || '';
let current = null;
async function api(method, path, body) {
  const res = await fetch(path, { method, headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  const json = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error((json && json.error) ? json.error.code + ': ' + json.error.message : res.status + ' ' + res.statusText);
  return json;
}
function showError(where, err) { const e = $(where); e.textContent = err ? String(err.message || err) : ''; }
function table(rows, cols, onPick) {
  const t = el('table'); const head = el('tr');
  for (const c of cols) head.append(el('th', c[0]));
  t.append(head);
  if (!rows.length) { const tr = el('tr'); const td = el('td', 'none', 'muted'); td.colSpan = cols.length; tr.append(td); t.append(tr); }
  for (const r of rows) {
    const tr = el('tr', undefined, onPick ? 'pick' : undefined);
    for (const c of cols) { const v = c[1](r); const td = el('td'); if (v instanceof Node) td.append(v); else td.textContent = v === null || v === undefined ? '–' : String(v); tr.append(td); }
    if (onPick) tr.addEventListener('click', () => onPick(r));
    t.append(tr);
  }
  return t;
}
const badge = (s) => el('span', s, 'status ' + s);
async function loadEntitlements() {
  showError('#ent-err');
  try {
    const q = $('#filter').value.trim();
    const page = await api('GET', '/v1/entitlements?limit=200' + (q ? '&tenant_id=' + encodeURIComponent(q) : ''));
    const box = $('#ents'); box.replaceChildren(table(page.data, [
      ['id', (e) => e.entitlement_id], ['tenant', (e) => e.tenant_id], ['product', (e) => e.product_id],
      ['type', (e) => e.policy_json.type], ['seats', (e) => e.policy_json.max_seats ?? '∞'], ['status', (e) => badge(e.status)],
      ['ends', (e) => e.ends_at], ['source', (e) => e.source]], (e) => openEntitlement(e.entitlement_id)));
    if (page.next_cursor) box.append(el('p', 'showing the first 200; filter by tenant to narrow', 'muted'));
  } catch (err) { showError('#ent-err', err); }
}
async function openEntitlement(id) {
  current = id; showError('#detail-err');
  $('#detail').hidden = false;
  try {
    const [e, usage, leases] = await Promise.all([api('GET', '/v1/entitlements/' + id), api('GET', '/v1/entitlements/' + id + '/usage'), api('GET', '/v1/leases?limit=200&entitlement_id=' + id)]);
    $('#detail-title').textContent = e.entitlement_id + ' · ' + e.tenant_id + ' · ' + e.product_id;
    const kv = $('#detail-kv'); kv.replaceChildren();
    const add = (k, v) => { kv.append(el('div', k, 'muted')); const d = el('div'); if (v instanceof Node) d.append(v); else d.textContent = v; kv.append(d); };
    add('status', badge(e.status)); add('policy', JSON.stringify(e.policy_json)); add('term', e.starts_at + ' → ' + e.ends_at);
    add('seats', usage.seats.assigned + ' assigned of ' + (usage.seats.total ?? '∞') + ', ' + usage.seats.active_30d + ' active in 30 days');
    add('leases', usage.leases.active + ' in force, peak ' + usage.leases.peak_30d + ' in 30 days');
    add('activity', usage.activity.grants_30d + ' grants, ' + usage.activity.denials_30d + ' denials, ' + usage.activity.unique_users_30d + ' unique subjects in 30 days');
    $('#leases').replaceChildren(table(leases.data, [['lease', (l) => l.lease_id], ['subject', (l) => l.subject_type + ':' + l.subject_id], ['expires', (l) => l.expires_at],
      ['', (l) => { const b = el('button', 'revoke'); b.addEventListener('click', (ev) => { ev.stopPropagation(); act('POST', '/v1/leases/' + l.lease_id + '/revoke'); }); return b; }]]));
    const seatsBox = $('#seats');
    if (e.policy_json.type === 'per_user' || e.policy_json.type === 'per_machine') {
      const seats = await api('GET', '/v1/entitlements/' + id + '/seats?limit=500');
      seatsBox.replaceChildren(table(seats.data, [['seat', (s) => s.seat_id], ['subject', (s) => s.subject_type + ':' + s.subject_id], ['assigned', (s) => s.assigned_at], ['by', (s) => s.assigned_by],
        ['', (s) => { const b = el('button', 'revoke'); b.addEventListener('click', () => act('DELETE', '/v1/entitlements/' + id + '/seats/' + s.seat_id)); return b; }]]));
      $('#seat-form').hidden = false;
    } else { seatsBox.replaceChildren(el('p', 'no named seats for ' + e.policy_json.type, 'muted')); $('#seat-form').hidden = true; }
  } catch (err) { showError('#detail-err', err); }
}
async function act(method, path, body) {
  showError('#detail-err');
  try { await api(method, path, body); await loadEntitlements(); if (current) await openEntitlement(current); await loadSide(); } catch (err) { showError('#detail-err', err); }
}
async function loadSide() {
  try { const s = await api('GET', '/v1/sync/status'); $('#sync').textContent = JSON.stringify(s, null, 2); } catch (err) { $('#sync').textContent = String(err.message); }
  try {
    // The log pages by sequence from the start: ask where its head is, then for the last 20 rows.
    const head = (await api('GET', '/v1/audit?limit=1')).head.seq;
    const a = await api('GET', '/v1/audit?limit=20&cursor=' + Math.max(0, head - 20)); const rows = a.data.slice().reverse();
    $('#audit').replaceChildren(table(rows, [['seq', (r) => r.seq], ['at', (r) => r.at], ['actor', (r) => r.actor], ['action', (r) => r.action], ['target', (r) => r.target_id]]));
  } catch (err) { $('#audit').textContent = String(err.message); }
}
async function signIn() {
  token = $('#token').value.trim() || token;
  sessionStorage.setItem('bpls_token', token);
  $('#token').value = '';
  await loadEntitlements(); await loadSide();
}
$('#signin').addEventListener('click', signIn);
$('#signout').addEventListener('click', () => { sessionStorage.removeItem('bpls_token'); token = ''; location.reload(); });
$('#reload').addEventListener('click', () => { loadEntitlements(); loadSide(); });
$('#filter').addEventListener('change', loadEntitlements);
for (const a of ['suspend', 'resume']) $('#' + a).addEventListener('click', () => current && act('POST', '/v1/entitlements/' + current + '/' + a));
$('#renew').addEventListener('click', () => current && act('POST', '/v1/entitlements/' + current + '/renew', { period_months: Number($('#months').value) }));
$('#assign').addEventListener('click', () => { const id = $('#subject').value.trim(); if (current && id) act('POST', '/v1/entitlements/' + current + '/seats', { principal_id: id }); });
if (token) signIn();
`;

const SCRIPT_HASH = `sha256-${createHash('sha256').update(SCRIPT).digest('base64')}`;

function Page({ nonce }: { nonce: string }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>bp-license-server</title>
        <link rel="icon" href="data:," />
        <style nonce={nonce}>{STYLE}</style>
      </head>
      <body>
        <header>
          <h1>bp-license-server</h1>
          <span class="sp" />
          <input id="token" type="password" placeholder="API token (bpls_…)" autocomplete="off" />
          <button id="signin">Sign in</button>
          <button id="signout">Sign out</button>
        </header>
        <main>
          <section>
            <h2>Entitlements</h2>
            <div class="row">
              <input id="filter" placeholder="tenant id" />
              <button id="reload">Reload</button>
            </div>
            <p id="ent-err" class="err" />
            <div id="ents" class="muted">
              Sign in with an API token to see the entitlements.
            </div>
          </section>
          <section id="detail" hidden>
            <h2 id="detail-title">Entitlement</h2>
            <div class="row">
              <button id="suspend">Suspend</button>
              <button id="resume">Resume</button>
              <select id="months">
                <option value="1">1 month</option>
                <option value="12" selected>
                  12 months
                </option>
                <option value="24">24 months</option>
              </select>
              <button id="renew">Renew</button>
            </div>
            <p id="detail-err" class="err" />
            <div id="detail-kv" class="kv" />
            <h2>Seats</h2>
            <div id="seat-form" class="row" hidden>
              <input id="subject" placeholder="subject id" />
              <button id="assign">Assign seat</button>
            </div>
            <div id="seats" />
            <h2>Leases in force</h2>
            <div id="leases" />
          </section>
          <section>
            <h2>Sync</h2>
            <pre id="sync" class="muted" />
          </section>
          <section>
            <h2>Audit log (latest)</h2>
            <div id="audit" />
          </section>
        </main>
        {/* Filled in raw below: JSX would escape the script. */}
        <script></script>
      </body>
    </html>
  );
}

/** GET /admin: the page. Public (it holds no data); the API calls it makes need a token. */
export function registerAdminPage(app: Hono<AppEnv>): void {
  app.get('/admin', (c) => {
    const nonce = randomBytes(16).toString('base64');
    const html = `<!doctype html>${String(Page({ nonce }))}`.replace(
      '<script></script>',
      `<script>${SCRIPT}</script>`,
    );
    c.header(
      'Content-Security-Policy',
      `default-src 'none'; script-src '${SCRIPT_HASH}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
    );
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('Referrer-Policy', 'no-referrer');
    c.header('Cache-Control', 'no-store');
    return c.html(html);
  });
}
