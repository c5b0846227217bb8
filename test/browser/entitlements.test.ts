/**
 * The admin console in Chromium, on entitlements: sign in, page through 1,000 by the API's cursor,
 * search by id prefix and tenant, create (the API's validation message shown once), suspend after
 * a confirmation (dismissed first: nothing changes), assign a named seat, and the usage chart
 * drawn from the day's leases and denials. Each step is checked in the database too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { createHarness, type Harness } from '../helpers.ts';
import { parseWith, entitlementCreateSchema } from '../../src/schemas.ts';
import { launchBrowser, listen, openPage, problemsOf, shot, signIn } from './browser.ts';

let h: Harness;
let browser: Browser;
let server: Awaited<ReturnType<typeof listen>>;
let page: Page;
const TOTAL = 1000;

const term = { starts_at: '2024-01-01T00:00:00Z', ends_at: '2024-12-31T23:59:59Z' };

beforeAll(async () => {
  h = createHarness();
  for (let i = 0; i < TOTAL; i++)
    h.services.entitlements.create(
      parseWith(entitlementCreateSchema, {
        tenant_id: `tenant-${i % 10}`,
        product_id: 'cad',
        policy_json: { type: 'concurrent', max_seats: 1 },
        ...term,
      }),
      'test',
    );
  server = await listen(h);
  browser = await launchBrowser();
  page = await openPage(browser);
  await signIn(page, server.base, h.admin);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  h?.close();
});

/** The ids in the list's first column, as shown. */
const shownIds = (p: Page) =>
  p.$$eval('#ents tr.pick td:first-child', (tds) => tds.map((td) => td.textContent ?? ''));

/** Waits until the list shows a page other than `before` (ids, first cell of each row). */
async function nextList(p: Page, before: string[]): Promise<string[]> {
  await p.waitForFunction(
    (b) =>
      JSON.stringify(
        [...document.querySelectorAll('#ents tr td:first-child')].map((td) => td.textContent),
      ) !== b,
    JSON.stringify(before),
  );
  return shownIds(p);
}

describe('the admin console: entitlements', () => {
  it('says who is signed in, with the server state and clock', async () => {
    expect(await page.textContent('#who')).toBe('signed in as test admin · admin · every tenant');
    await page.waitForSelector('#health:has-text("server: ready")');
    expect(await page.textContent('#health')).toContain('server clock 2024-01-15T10:30:00Z');
    expect(await page.isVisible('#new-ent')).toBe(true);
  });

  it('pages through 1,000 entitlements 50 at a time by the cursor, and back', async () => {
    await page.waitForSelector('#ents tr.pick');
    const seen = new Set<string>();
    let ids = await shownIds(page);
    const first = ids;
    for (let n = 1; ; n++) {
      expect(ids).toHaveLength(50);
      for (const id of ids) seen.add(id);
      expect(await page.textContent('#page-info')).toContain(`page ${n}: ${(n - 1) * 50 + 1}–`);
      if (await page.isDisabled('#next')) break;
      await page.click('#next');
      ids = await nextList(page, ids);
    }
    expect(seen.size).toBe(TOTAL);
    expect(await page.textContent('#page-info')).toBe('page 20: 951–1000 (last page)');
    // The ids are shown as they are: the table does not change their case.
    const stored = h.store.db.prepare('SELECT id FROM entitlements ORDER BY seq').all() as Array<{
      id: string;
    }>;
    expect([...seen]).toEqual(stored.map((r) => r.id));
    await shot(page, 'entitlements-last-page');
    await page.click('#prev');
    ids = await nextList(page, ids);
    expect(await page.textContent('#page-info')).toContain('page 19: 901–950');
    await page.click('#first');
    expect(await nextList(page, ids)).toEqual(first);
  });

  it('searches by id prefix and by tenant through the API filters', async () => {
    const stored = h.store.db
      .prepare('SELECT id FROM entitlements ORDER BY seq LIMIT 1 OFFSET 500')
      .get() as {
      id: string;
    };
    let before = await shownIds(page);
    await page.fill('#f-id', stored.id.slice(0, -1));
    await page.click('#search');
    before = await nextList(page, before);
    expect(before).toEqual([stored.id]);
    await page.fill('#f-id', stored.id.toUpperCase());
    await page.click('#search');
    await page.waitForSelector('#ents td:has-text("no entitlement matches")');
    await page.fill('#f-id', '');
    await page.fill('#f-tenant', 'tenant-3');
    await page.press('#f-tenant', 'Enter');
    before = await nextList(page, []);
    const tenants = await page.$$eval('#ents tr.pick td:nth-child(2)', (tds) =>
      tds.map((td) => td.textContent),
    );
    expect(new Set(tenants)).toEqual(new Set(['tenant-3']));
    expect(tenants).toHaveLength(50);
    await page.fill('#f-tenant', '');
    await page.click('#search');
    await nextList(page, before);
  });

  it('creates an entitlement; a refused one shows the API message once and changes nothing', async () => {
    const count = () =>
      (h.store.db.prepare('SELECT count(*) AS n FROM entitlements').get() as { n: number }).n;
    await page.click('#new-ent');
    await page.fill('#e-tenant', 'acme');
    await page.fill('#e-product', 'Cad-Pro');
    await page.fill(
      '#e-policy',
      '{"type": "per_user", "max_seats": 2, "seat_assignment": "manual"}',
    );
    await page.fill('#e-starts', '2024-01-01T00:00:00Z');
    await page.fill('#e-ends', '2023-12-31T00:00:00Z');
    await page.click('#e-save');
    await page.waitForSelector('#ent-form-err:not(:empty)');
    const err = await page.textContent('#ent-form-err');
    expect(err).toContain('ends_at must be after starts_at');
    // Said once: in the form, not again in the list's or the banner's line.
    expect(await page.textContent('body')).not.toMatch(
      /ends_at must be after starts_at[^]*ends_at must be after/,
    );
    expect(count()).toBe(TOTAL);
    await page.fill('#e-ends', '2024-12-31T00:00:00Z');
    await page.click('#e-save');
    await page.waitForSelector('#detail-title:has-text("acme")');
    expect(await page.isVisible('#ent-form')).toBe(false);
    expect(count()).toBe(TOTAL + 1);
    const row = h.store.db
      .prepare("SELECT id, product_id, policy_json FROM entitlements WHERE tenant_id = 'acme'")
      .get() as { id: string; product_id: string; policy_json: string };
    expect(row.product_id).toBe('Cad-Pro');
    expect(JSON.parse(row.policy_json)).toMatchObject({ type: 'per_user', max_seats: 2 });
    expect(await page.textContent('#detail-title')).toBe(`${row.id} · acme · Cad-Pro`);
    // As the admin sees it: no style changes the case of ids (innerText follows the CSS).
    expect(await page.innerText('#detail-title')).toBe(`${row.id} · acme · Cad-Pro`);
    // The detail is where the admin looks: scrolled into view.
    const box = await page.locator('#detail').boundingBox();
    expect(box!.y).toBeLessThan(900);
    expect(box!.y + 40).toBeGreaterThan(0);
  });

  it('assigns a named seat on a per_user policy (and shows no seat form on a concurrent one)', async () => {
    await page.fill('#subject', 'Alice');
    await page.click('#assign');
    await page.waitForSelector('#seats td:has-text("user:Alice")');
    const seats = h.store.db
      .prepare(
        "SELECT s.subject_id FROM seats s JOIN entitlements e ON e.id = s.entitlement_id WHERE e.tenant_id = 'acme'",
      )
      .all();
    expect(seats).toEqual([{ subject_id: 'Alice' }]);
    await shot(page, 'entitlement-per-user');
  });

  it('suspends only after a confirmation; dismissed, nothing changes', async () => {
    const id = (await page.textContent('#detail-title'))!.split(' · ')[0]!;
    const status = () =>
      (
        h.store.db.prepare('SELECT status FROM entitlements WHERE id = ?').get(id) as {
          status: string;
        }
      ).status;
    const asked: string[] = [];
    page.once('dialog', (d) => {
      asked.push(d.message());
      void d.dismiss();
    });
    await page.click('#suspend');
    await page.waitForTimeout(300);
    expect(asked).toEqual([`Suspend ${id}? No new leases or renewals until resumed.`]);
    expect(status()).toBe('active');
    page.once('dialog', (d) => void d.accept());
    await page.click('#suspend');
    await page.waitForSelector('#detail-kv .status.suspended');
    expect(status()).toBe('suspended');
    expect(await page.isVisible('#resume')).toBe(true);
    expect(await page.isVisible('#suspend')).toBe(false);
    const audit = h.store.db
      .prepare('SELECT action FROM audit_log WHERE target_id = ? ORDER BY seq DESC LIMIT 1')
      .get(id);
    expect(audit).toEqual({ action: 'entitlement.suspend' });
  });

  it('edits the policy and term in the form, and revokes only after a confirmation', async () => {
    const id = (await page.textContent('#detail-title'))!.split(' · ')[0]!;
    const row = () =>
      h.store.db
        .prepare('SELECT status, policy_json, ends_at FROM entitlements WHERE id = ?')
        .get(id) as {
        status: string;
        policy_json: string;
        ends_at: number;
      };
    await page.click('#edit');
    expect(await page.isDisabled('#e-tenant')).toBe(true);
    await page.fill(
      '#e-policy',
      '{"type": "per_user", "max_seats": 5, "seat_assignment": "manual"}',
    );
    await page.fill('#e-ends', '2025-06-30T00:00:00Z');
    await page.click('#e-save');
    await page.waitForSelector('#detail-kv:has-text("5 seats")');
    expect(JSON.parse(row().policy_json).max_seats).toBe(5);
    expect(row().ends_at).toBe(Date.parse('2025-06-30T00:00:00Z'));
    page.once('dialog', (d) => void d.dismiss());
    await page.click('#revoke');
    await page.waitForTimeout(300);
    expect(row().status).toBe('suspended');
    page.once('dialog', (d) => {
      expect(d.message()).toBe(`Revoke ${id} for good? This cannot be undone.`);
      void d.accept();
    });
    await page.click('#revoke');
    await page.waitForSelector('#detail-kv .status.revoked');
    expect(row().status).toBe('revoked');
    // Revoked is final: no lifecycle button is left to press.
    for (const b of ['#edit', '#suspend', '#resume', '#renew', '#revoke'])
      expect(await page.isVisible(b), b).toBe(false);
  });

  it('pages the audit log, newest first', async () => {
    const head = (h.store.db.prepare('SELECT max(seq) AS n FROM audit_log').get() as { n: number })
      .n;
    // At the head already (Newest and Newer are disabled there).
    expect(await page.isDisabled('#audit-newest')).toBe(true);
    await page.waitForSelector(`#audit-info:text-is("${head - 19}–${head} of ${head}")`);
    expect(await page.textContent('#audit tr:nth-child(2) td:first-child')).toBe(String(head));
    await page.click('#audit-older');
    await page.waitForSelector(`#audit-info:text-is("${head - 39}–${head - 20} of ${head}")`);
    expect(await page.textContent('#audit tr:nth-child(2) td:first-child')).toBe(String(head - 20));
    await page.click('#audit-newer');
    await page.waitForSelector(`#audit-info:text-is("${head - 19}–${head} of ${head}")`);
  });

  it('draws the usage chart: leases in force and denials of the day', async () => {
    const id = (
      h.store.db.prepare('SELECT id FROM entitlements ORDER BY seq LIMIT 1').get() as {
        id: string;
      }
    ).id;
    const lease = (subject: string) =>
      h.req('POST', '/v1/license/lease', {
        product_id: 'cad',
        tenant_id: 'tenant-0',
        subject_type: 'user',
        subject_id: subject,
        entitlement_id: id,
      });
    expect((await lease('ann')).status).toBe(201);
    expect((await lease('bob')).status).toBe(409);
    expect((await lease('cy')).status).toBe(409);
    await page.fill('#f-id', id);
    await page.click('#search');
    await page.waitForSelector(`#ents tr.pick td:text-is("${id}")`);
    await page.click(`#ents tr.pick td:text-is("${id}")`);
    await page.waitForSelector(`#detail-title:has-text("${id}")`);
    const today = page.locator('#chart svg g[data-date="2024-01-15"]');
    await today.waitFor();
    expect(await today.getAttribute('data-peak')).toBe('1');
    expect(await today.getAttribute('data-denials')).toBe('2');
    expect(await page.locator('#chart svg g').count()).toBe(30);
    expect(await page.textContent('#chart')).toContain('denials (2 in 30 days)');
    expect(await page.textContent('#leases')).toContain('user:ann');
    // A concurrent policy has no named seats: no seat form.
    expect(await page.isVisible('#seats-box')).toBe(false);
    await shot(page, 'entitlement-usage-chart');
    expect(problemsOf(page)).toEqual([]);
  });
});
