/**
 * The web admin page: one self-contained HTML page (no external assets, strict CSP) that talks to
 * the admin API with a token the admin pastes. It holds no data itself: every figure comes from
 * the same routes, with the same permissions, as the CLI and scripts use. Its script is the admin
 * console (./console/), inlined; the policy allows that script by its hash and nothing else.
 */
import type { Hono } from 'hono';
import { createHash, randomBytes } from 'node:crypto';
import type { AppEnv } from '../http/types.ts';
// The console (./console/main.ts, typed browser code) bundled into one script at build time.
import SCRIPT from './console/main.ts?script';

const STYLE = `
:root { font-family: system-ui, sans-serif; color: #1d232b; background: #f6f7f9; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
#sync p { margin: 2px 0; font-size: 13px; }
section p, pre { overflow-wrap: anywhere; }
body { margin: 0; }
header { background: #1d232b; color: #fff; padding: 10px 16px; display: flex; gap: 8px 16px; align-items: center; flex-wrap: wrap; }
header h1 { font-size: 16px; margin: 0; font-weight: 600; }
header .sp { flex: 1; }
header .muted { color: #c9d1da; }
main { padding: 12px 16px; display: grid; gap: 12px; max-width: 1400px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 12px 14px; min-width: 0; }
h2 { font-size: 14px; margin: 0 0 8px; letter-spacing: .02em; color: #56616e; }
h3 { font-size: 13px; margin: 12px 0 6px; color: #56616e; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #eef0f3; white-space: nowrap; }
th { color: #56616e; font-weight: 600; }
tr.pick { cursor: pointer; }
tr.pick:hover, tr.pick:focus { background: #f0f4ff; outline: none; }
tr.open { background: #e4ecff; }
.status { padding: 1px 6px; border-radius: 8px; font-size: 12px; background: #e8ebef; }
.status.active { background: #dff3e4; } .status.grace { background: #fff1cc; }
.status.suspended, .status.expired, .status.revoked, .status.pending { background: #fbe1e1; }
input, button, select, textarea { font: inherit; font-size: 13px; padding: 4px 8px; max-width: 100%; }
textarea { width: 100%; font-family: ui-monospace, monospace; }
button { cursor: pointer; }
button.danger { color: #a4161a; }
.err { color: #a4161a; font-size: 13px; white-space: pre-wrap; margin: 4px 0; }
.err:empty { display: none; }
.ok { color: #1b6b34; font-size: 13px; white-space: pre-wrap; }
.muted { color: #56616e; font-size: 12px; }
.row { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin: 4px 0; }
.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; font-size: 13px; }
.kv > div { overflow-wrap: anywhere; }
.banner { padding: 10px 16px; background: #fbe1e1; color: #7a1114; font-size: 14px; }
.secret { font-family: ui-monospace, monospace; background: #fff7d6; padding: 6px; overflow-wrap: anywhere; }
pre { white-space: pre-wrap; font-size: 12px; margin: 4px 0; }
svg.chart { width: 100%; max-width: 720px; height: auto; display: block; }
svg.chart text { font-size: 10px; fill: #56616e; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.leg-peak { background: #3867d6; } .leg-denials { background: #d63838; margin-left: 8px; }
.form { display: grid; gap: 6px; max-width: 640px; }
.form label { display: grid; gap: 2px; font-size: 12px; color: #56616e; }
#signed-out { padding: 16px; }
@media (max-width: 600px) { main { padding: 8px; } section { padding: 10px; } .kv { grid-template-columns: 1fr; } }
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
          <span id="who" class="muted" />
          <span id="health" class="muted" />
          <span class="sp" />
          <span id="signin-box" class="row">
            <input id="token" type="password" placeholder="API token (bpls_…)" autocomplete="off" />
            <button id="signin">Sign in</button>
          </span>
          <button id="signout" hidden>
            Sign out
          </button>
        </header>
        <div id="banner" class="banner" hidden />
        <main id="console" hidden>
          <section id="ents-section">
            <h2>Entitlements</h2>
            <div class="row">
              <input id="f-id" placeholder="id starts with" />
              <input id="f-tenant" placeholder="tenant id" />
              <input id="f-product" placeholder="product id" />
              <select id="f-status">
                <option value="">any status</option>
                <option>active</option>
                <option>grace</option>
                <option>pending</option>
                <option>suspended</option>
                <option>expired</option>
                <option>revoked</option>
              </select>
              <button id="search">Search</button>
              <button id="new-ent" data-need="write" data-global>
                New entitlement
              </button>
            </div>
            <div id="ent-form" class="form" hidden>
              <h3 id="ent-form-title">New entitlement</h3>
              <label>
                tenant id
                <input id="e-tenant" />
              </label>
              <label>
                product id
                <input id="e-product" />
              </label>
              <label>
                policy (JSON)
                <textarea id="e-policy" rows={3} />
              </label>
              <label>
                starts at (RFC 3339)
                <input id="e-starts" />
              </label>
              <label>
                ends at (RFC 3339)
                <input id="e-ends" />
              </label>
              <p id="ent-form-err" class="err" />
              <div class="row">
                <button id="e-save">Save</button>
                <button id="e-cancel">Cancel</button>
              </div>
            </div>
            <p id="ent-err" class="err" />
            <div id="ents" class="scroll" />
            <div class="row">
              <button id="first">First page</button>
              <button id="prev">Previous</button>
              <button id="next">Next</button>
              <span id="page-info" class="muted" />
            </div>
          </section>
          <section id="detail" hidden tabindex={-1}>
            <h2 id="detail-title">Entitlement</h2>
            <div class="row" data-need="write" data-global>
              <button id="edit">Edit policy or term</button>
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
              <button id="revoke" class="danger">
                Revoke…
              </button>
            </div>
            <p id="detail-err" class="err" />
            <div id="detail-kv" class="kv" />
            <h3>Usage, last 30 days</h3>
            <div id="chart" />
            <div id="seats-box">
              <h3>Named seats</h3>
              <div id="seat-form" data-need="seats">
                <div class="row">
                  <input id="subject" placeholder="subject id" />
                  <button id="assign">Assign seat</button>
                </div>
                <div class="row">
                  <textarea id="bulk" rows={2} placeholder="many subject ids, one a line" />
                  <button id="assign-bulk">Assign all</button>
                </div>
              </div>
              <div id="seats" class="scroll" />
            </div>
            <div id="quotas-box" hidden>
              <h3>Quota installations</h3>
              <div id="installations" class="scroll" />
            </div>
            <h3>Leases in force</h3>
            <div id="leases" class="scroll" />
          </section>
          <section id="sync-section" data-need="read" data-global>
            <h2>Sync</h2>
            <div id="sync" />
            <div data-need="sync" data-global>
              <h3>Import a bundle</h3>
              <div class="row">
                <input id="bundle" type="file" accept=".bpsync" />
                <button id="dry-run">Check (dry run)</button>
                <button id="apply" hidden>
                  Apply
                </button>
              </div>
              <pre id="sync-diff" />
              <h3>Export</h3>
              <button id="export">Download the next export</button>
              <p id="export-note" class="muted" />
            </div>
            <p id="sync-err" class="err" />
          </section>
          <section id="tokens-section" data-need="tokens" data-global>
            <h2>API tokens</h2>
            <div class="row">
              <input id="t-name" placeholder="name" />
              <select id="t-role">
                <option>admin</option>
                <option>tenant_admin</option>
                <option selected>reader</option>
              </select>
              <input id="t-tenant" placeholder="tenant id (optional)" />
              <button id="t-create">Create token</button>
            </div>
            <p id="t-secret" class="secret" hidden />
            <p id="tokens-err" class="err" />
            <div id="tokens" class="scroll" />
          </section>
          <section id="audit-section" data-need="audit" data-global>
            <h2>Audit log</h2>
            <div id="audit" class="scroll" />
            <div class="row">
              <button id="audit-newest">Newest</button>
              <button id="audit-newer">Newer</button>
              <button id="audit-older">Older</button>
              <span id="audit-info" class="muted" />
            </div>
            <p id="audit-err" class="err" />
          </section>
        </main>
        <p id="signed-out" class="muted">
          Sign in with an API token to use the console.
        </p>
        {/* Filled in raw below: JSX would escape the script. */}
        <script></script>
      </body>
    </html>
  );
}

/** GET /admin: the page. Public (it holds no data); the API calls it makes need a token. */
export function registerAdminPage(app: Hono<AppEnv>): void {
  // A typed or bookmarked /admin/ finds the page; 308 keeps the method (a GET stays a GET).
  app.get('/admin/', (c) => c.redirect('/admin', 308));
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
