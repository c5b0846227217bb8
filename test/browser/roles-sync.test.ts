/**
 * The admin console in Chromium: a refused token and a server that does not answer are each said
 * once; a reader (at 420 px width) sees everything it may read and no write control; an admin
 * uploads a signed bundle, reads its dry-run diff (nothing changed yet), applies it, downloads the
 * next export, makes an API token (its secret shown once) and revokes it after a confirmation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { SEED_NOW, seedEntitlement } from '../helpers.ts';
import { createWorld, ent, type World } from '../sync/world.ts';
import { launchBrowser, listen, openPage, problemsOf, shot, signIn } from './browser.ts';

let w: World;
let browser: Browser;
let server: Awaited<ReturnType<typeof listen>>;
let entId: string;

beforeAll(async () => {
  w = createWorld({ now: SEED_NOW });
  const made = await w.h.req('POST', '/v1/entitlements', {
    ...seedEntitlement,
    policy_json: { type: 'per_user', max_seats: 3, seat_assignment: 'manual' },
  });
  entId = made.body.entitlement_id;
  await w.h.req('POST', `/v1/entitlements/${entId}/seats`, {
    subject_type: 'user',
    subject_id: 'alice',
  });
  server = await listen(w.h);
  browser = await launchBrowser();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  w?.h.close();
});

const rows = (sql: string, ...args: unknown[]) => w.h.store.db.prepare(sql).all(...args);

describe('the admin console: roles, states, sync and tokens', () => {
  it('fails, naming apt-get install chromium, when Chromium is missing (never skips)', async () => {
    await expect(launchBrowser('/nonexistent/chromium')).rejects.toThrow(
      '/nonexistent/chromium is missing: the browser tests need it (apt-get install chromium)',
    );
  });

  it('says so once when the token is refused, and stays signed out', async () => {
    const page = await openPage(browser);
    await page.goto(`${server.base}/admin`);
    expect(await page.isVisible('#console')).toBe(false);
    await page.fill('#token', 'bpls_not_a_token');
    await page.click('#signin');
    await page.waitForSelector('#banner:not([hidden])');
    const text = await page.textContent('#banner');
    expect(text).toMatch(/^That token was refused: .+ Paste a valid API token/);
    expect(await page.isVisible('#console')).toBe(false);
    expect(await page.evaluate(() => sessionStorage.getItem('bpls_token'))).toBeNull();
    await page.close();
  });

  it('shows a reader everything it may read and no write control, at 420 px', async () => {
    const page = await openPage(browser, 420);
    await signIn(page, server.base, w.h.reader);
    expect(await page.textContent('#who')).toBe('signed in as test reader · reader · every tenant');
    await page.waitForSelector('#ents tr.pick');
    await page.click('#ents tr.pick');
    await page.waitForSelector('#seats td:has-text("user:alice")');
    for (const sel of [
      '#new-ent',
      '#edit',
      '#suspend',
      '#revoke',
      '#renew',
      '#seat-form',
      '#assign',
      '#tokens-section',
      '#bundle',
      '#export',
    ])
      expect(await page.isVisible(sel), sel).toBe(false);
    // No revoke button in the seat or lease tables either; the audit log (audit) is there.
    expect(await page.locator('#detail button:visible').count()).toBe(0);
    expect(await page.isVisible('#audit-section')).toBe(true);
    expect(await page.isVisible('#sync')).toBe(true);
    // Usable at 420 px: the page itself does not scroll sideways (wide tables scroll in their box).
    await shot(page, 'reader-420px');
    const wide = await page.evaluate(() =>
      [...document.querySelectorAll<HTMLElement>('body *')]
        .filter((e) => e.getBoundingClientRect().right > 421 && !e.closest('.scroll'))
        .map((e) => `${e.tagName}#${e.id}.${e.className}`),
    );
    expect(wide).toEqual([]);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(
      420,
    );
    expect(problemsOf(page)).toEqual([]);
    await page.close();
  });

  it('gives a tenant admin its seat controls only: no entitlement writes, sync, tokens or audit', async () => {
    const token = w.h.services.apiTokens.create(
      { name: 'desk', role: 'tenant_admin', tenantId: 'customer-tenant-id' },
      'test',
    ).token;
    const page = await openPage(browser);
    await signIn(page, server.base, token);
    expect(await page.textContent('#who')).toBe(
      'signed in as desk · tenant_admin · tenant customer-tenant-id',
    );
    await page.waitForSelector('#ents tr.pick');
    await page.click('#ents tr.pick');
    await page.waitForSelector('#seats td:has-text("user:alice")');
    for (const sel of ['#new-ent', '#edit', '#suspend', '#sync-section', '#tokens-section'])
      expect(await page.isVisible(sel), sel).toBe(false);
    expect(await page.isVisible('#audit-section')).toBe(false);
    expect(await page.isVisible('#seat-form')).toBe(true);
    await page.fill('#bulk', 'bob\ncarol');
    await page.click('#assign-bulk');
    await page.waitForSelector('#seats td:has-text("user:carol")');
    expect(rows('SELECT subject_id FROM seats WHERE entitlement_id = ? ORDER BY 1', entId)).toEqual(
      [{ subject_id: 'alice' }, { subject_id: 'bob' }, { subject_id: 'carol' }],
    );
    // The seat count is the policy's: a fourth is refused, said once, and nothing is added.
    await page.fill('#subject', 'dave');
    await page.click('#assign');
    await page.waitForSelector('#detail-err:not(:empty)');
    expect(await page.textContent('#detail-err')).toMatch(/seat/);
    expect(rows('SELECT count(*) AS n FROM seats WHERE entitlement_id = ?', entId)).toEqual([
      { n: 3 },
    ]);
    expect(await page.isVisible('#banner')).toBe(false);
    expect(problemsOf(page)).toEqual([]);
    await page.close();
  });

  it('shows a bundle dry run as text, applies it only when asked, and downloads the export', async () => {
    const page = await openPage(browser);
    await signIn(page, server.base, w.h.admin);
    await page.waitForSelector('#sync p');
    expect(await page.textContent('#sync')).toContain('No bundle has been imported yet.');
    const file = w.sign(1, { entitlements: [ent('ent_Vendor_A'), ent('ent_vendor_a')] });
    await page.setInputFiles('#bundle', file);
    await page.click('#dry-run');
    await page.waitForSelector('#sync-diff:not(:empty)');
    const diff = await page.textContent('#sync-diff');
    expect(diff).toContain('Dry run of bundle 1: nothing changes until you apply it.');
    expect(diff).toContain('Entitlements: added 2, ');
    expect(diff).toContain('added: ent_Vendor_A, ent_vendor_a');
    expect(rows("SELECT id FROM entitlements WHERE source = 'bundle'")).toEqual([]);
    await shot(page, 'sync-dry-run');
    await page.click('#apply');
    await page.waitForSelector('#sync-diff:has-text("Import of bundle 1: applied.")');
    expect(rows("SELECT id FROM entitlements WHERE source = 'bundle' ORDER BY id")).toEqual([
      { id: 'ent_Vendor_A' },
      { id: 'ent_vendor_a' },
    ]);
    await page.waitForSelector('#sync:has-text("Latest bundle imported: 1")');
    expect(await page.isVisible('#apply')).toBe(false);
    // Ids keep their case: the prefix ent_V finds ent_Vendor_A, not ent_vendor_a. The list shown
    // before the search (every entitlement) has ent_Vendor_A too, so wait for the search's list.
    await page.fill('#f-id', 'ent_V');
    await page.click('#search');
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll('#ents tr.pick td:first-child')]
          .map((td) => td.textContent)
          .join() === 'ent_Vendor_A',
    );
    expect(await page.locator('#ents tr.pick').count()).toBe(1);

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    expect(download.suggestedFilename()).toMatch(/\.bpsync$/);
    await page.waitForSelector('#sync:has-text("Latest usage export: 1")');
    expect(rows('SELECT seq FROM sync_exports')).toHaveLength(1);
    expect(problemsOf(page)).toEqual([]);
    await page.close();
  });

  it('makes an API token, shows its secret once, and revokes it after a confirmation', async () => {
    const page = await openPage(browser);
    await signIn(page, server.base, w.h.admin);
    await page.fill('#t-name', 'acme helpdesk');
    await page.selectOption('#t-role', 'tenant_admin');
    await page.fill('#t-tenant', 'acme');
    await page.click('#t-create');
    await page.waitForSelector('#t-secret:not([hidden])');
    const secret = /bpls_\S+/.exec((await page.textContent('#t-secret'))!)![0];
    const made = rows("SELECT id, role, tenant_id FROM api_tokens WHERE name = 'acme helpdesk'");
    expect(made).toEqual([{ id: expect.any(String), role: 'tenant_admin', tenant_id: 'acme' }]);
    expect((await w.h.req('GET', '/v1/whoami', undefined, secret)).body.name).toBe('acme helpdesk');
    // The list never shows a secret.
    expect(await page.textContent('#tokens')).not.toContain(secret);
    page.once('dialog', (d) => void d.accept());
    await page
      .locator('#tokens tr', { hasText: 'acme helpdesk' })
      .getByRole('button', { name: 'revoke' })
      .click();
    await page.waitForSelector('#tokens tr:has-text("acme helpdesk"):has-text("revoked")');
    expect((await w.h.req('GET', '/v1/whoami', undefined, secret)).status).toBe(401);
    // The audit log shows it, newest first.
    await page.waitForSelector('#audit tr:nth-child(2):has-text("token.revoke")');
    await shot(page, 'tokens-audit');
    await page.close();
  });

  it('says the server is not answering when it stops', async () => {
    const page = await openPage(browser);
    await signIn(page, server.base, w.h.admin);
    await server.close();
    await page.click('#search');
    await page.waitForSelector('#banner:not([hidden])');
    expect(await page.textContent('#banner')).toMatch(/^The server is not answering/);
    await shot(page, 'server-down');
    await page.close();
  });
});
