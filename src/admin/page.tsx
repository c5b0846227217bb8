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
