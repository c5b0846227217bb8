/**
 * The admin console in Chromium, on quotas (issue 14: "quotas when they exist" in the entitlement
 * detail): each quota's use, the policy's limits, the installations, and removing one after a
 * confirmation (dismissed first: nothing changes); a reader sees them without the remove button,
 * and a policy without quotas shows no quota box. Each step is checked in the database too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { createHarness, seedEntitlement, type Harness } from '../helpers.ts';
import { launchBrowser, listen, openPage, problemsOf, shot, signIn } from './browser.ts';

let h: Harness;
let browser: Browser;
let server: Awaited<ReturnType<typeof listen>>;
let quoted: string;
let plain: string;

const names = () =>
  (
    h.store.db
      .prepare('SELECT name FROM installations WHERE entitlement_id = ? ORDER BY seq')
      .all(quoted) as Array<{ name: string }>
  ).map((r) => r.name);

/** Opens entitlement `id` from the list, searched by its id. */
async function open(page: Page, id: string): Promise<void> {
  await page.fill('#f-id', id);
  await page.click('#search');
  await page.waitForSelector(`#ents tr.pick td:text-is("${id}")`);
  await page.click(`#ents tr.pick td:text-is("${id}")`);
  await page.waitForSelector(`#detail-title:has-text("${id}")`);
}

beforeAll(async () => {
  h = createHarness();
  const made = await h.req('POST', '/v1/entitlements', {
    ...seedEntitlement,
    tenant_id: 'acme',
    policy_json: { type: 'concurrent', max_seats: 5, quotas: { dashboards: 3, reports: 1 } },
  });
  quoted = made.body.entitlement_id;
  for (const [name, version] of [
    ['Sales Dashboard', '1.2.0'],
    ['Ops Dashboard', null],
  ] as const) {
    const r = await h.req('POST', `/v1/entitlements/${quoted}/installations`, {
      quota: 'dashboards',
      name,
      version,
      principal_id: 'alice',
    });
    expect(r.status).toBe(201);
  }
  plain = (await h.req('POST', '/v1/entitlements', seedEntitlement)).body.entitlement_id;
  server = await listen(h);
  browser = await launchBrowser();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  h?.close();
});

describe('the admin console: quotas', () => {
  it('shows each quota’s use and the installations, and removes one only after a confirmation', async () => {
    const page = await openPage(browser);
    await signIn(page, server.base, h.admin);
    await open(page, quoted);
    const kv = page.locator('#detail-kv');
    await kv.locator('text=2 used of 3, 1 left').waitFor();
    expect(await kv.textContent()).toContain('quota reports0 used of 1, 1 left');
    expect(await kv.textContent()).toContain('quotas: dashboards 3, reports 1');
    expect(await page.isVisible('#quotas-box')).toBe(true);
    const rows = page.locator('#installations tr');
    expect(await rows.count()).toBe(3);
    expect(await page.textContent('#installations')).toContain('Sales Dashboard');
    expect(await page.textContent('#installations')).toContain('1.2.0');
    await shot(page, 'entitlement-quotas');

    const asked = page.waitForEvent('dialog');
    const click = page.click(
      '#installations tr:has-text("Sales Dashboard") button:text-is("remove")',
    );
    const dialog = await asked;
    expect(dialog.message()).toBe('Remove dashboards "Sales Dashboard"? Its unit is free again.');
    await dialog.dismiss();
    await click;
    expect(names()).toEqual(['Sales Dashboard', 'Ops Dashboard']);

    page.once('dialog', (d) => void d.accept());
    await page.click('#installations tr:has-text("Sales Dashboard") button:text-is("remove")');
    await kv.locator('text=1 used of 3, 2 left').waitFor();
    // The table redraws after the figures: wait for the removed row to leave it.
    await page
      .locator('#installations tr:has-text("Sales Dashboard")')
      .waitFor({ state: 'detached' });
    expect(await page.textContent('#installations')).not.toContain('Sales Dashboard');
    expect(names()).toEqual(['Ops Dashboard']);
    const audit = h.store.db
      .prepare('SELECT action FROM audit_log WHERE target_id = ? ORDER BY seq DESC LIMIT 1')
      .get(quoted);
    expect(audit).toEqual({ action: 'installation.remove' });

    // A policy without quotas: no quota rows, no quota box.
    await open(page, plain);
    expect(await page.textContent('#detail-kv')).not.toContain('quota');
    expect(await page.isVisible('#quotas-box')).toBe(false);
    expect(problemsOf(page)).toEqual([]);
    await page.close();
  });

  it('shows a reader the installations without the remove button', async () => {
    const page = await openPage(browser);
    await signIn(page, server.base, h.reader);
    await open(page, quoted);
    await page.waitForSelector('#installations tr:has-text("Ops Dashboard")');
    expect(await page.locator('#installations button').count()).toBe(0);
    expect(problemsOf(page)).toEqual([]);
    await page.close();
  });
});
