/**
 * The browser tests' harness: Debian's Chromium (/usr/bin/chromium) driven by playwright-core
 * (npm's own browser downloads do not work here), against the real app listening on 127.0.0.1
 * in this process (the harness's database, migrations and manual clock). Screenshots go under
 * test-artifacts/screenshots/ (git-ignored) for a person to look at.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { Harness } from '../helpers.ts';
import { ROOT } from '../spawn.ts';

export const CHROMIUM = '/usr/bin/chromium';
const SHOTS = `${ROOT}test-artifacts/screenshots/`;

/**
 * Launches headless Chromium. Throws (never skips) when it is missing: the tests are part of
 * `make test`, and .ci/run installs it.
 */
export async function launchBrowser(executablePath = CHROMIUM): Promise<Browser> {
  if (!existsSync(executablePath))
    throw new Error(
      `${executablePath} is missing: the browser tests need it (apt-get install chromium)`,
    );
  return chromium.launch({
    executablePath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** The harness's app listening on 127.0.0.1 (a free port) as the server serves it. */
export async function listen(h: Harness): Promise<{ base: string; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => h.app.serveNode(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A new page at `width` px, failing the test on any script error or CSP violation it reports. */
export async function openPage(browser: Browser, width = 1200): Promise<Page> {
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/.test(m.text()))
      problems.push(`console: ${m.text()}`);
  });
  (page as Page & { problems: string[] }).problems = problems;
  return page;
}

/** What the page reported as errors (script errors, CSP refusals) since it opened. */
export const problemsOf = (page: Page): string[] =>
  (page as Page & { problems?: string[] }).problems ?? [];

/** Signs in on the admin page with a token and waits until the console says who is signed in. */
export async function signIn(page: Page, base: string, token: string): Promise<void> {
  await page.goto(`${base}/admin`);
  await page.fill('#token', token);
  await page.click('#signin');
  await page.waitForSelector('#who:not(:empty)');
}

/** Writes a full-page screenshot to test-artifacts/screenshots/<name>.png. */
export async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true });
}
