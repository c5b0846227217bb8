import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createHarness, tempDir, type Harness } from '../../test/helpers.ts';
import { CLI, ROOT, killStrays, startServe } from '../../test/spawn.ts';
import { createIdentity, dataPaths } from '../data-dir.ts';
import { openStore } from '../storage/store.ts';
import SCRIPT from './console/main.ts?script';

let h: Harness;
beforeEach(() => {
  h = createHarness();
});
afterEach(() => h.close());
afterAll(() => killStrays());

const pageScripts = (html: string) =>
  [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!);

describe('the admin page', () => {
  it('is one self-contained page under a strict content security policy', async () => {
    const r = await h.req('GET', '/admin', undefined, null);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/html');
    expect(r.text.startsWith('<!doctype html><html lang="en">')).toBe(true);
    const csp = r.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    // The only script is the inline one whose hash the policy names.
    const scripts = pageScripts(r.text);
    expect(scripts).toHaveLength(1);
    // It is the admin console (src/admin/console/), bundled: one self-contained script.
    expect(scripts[0]).toBe(SCRIPT);
    expect(SCRIPT).toMatch(/^"use strict";\(\(\)\s*=>\s*\{/);
    // No module syntax left (import x from, import {…}, import * as, import(…), import "m",
    // require(…)); the word alone is in the sync import route's path.
    expect(SCRIPT).not.toMatch(/\bimport\s*[({"'`*]|\bimport\s+[\w{*$]|\brequire\(/);
    expect(SCRIPT).toContain('/v1/sync/import');
    expect(csp).toContain(`'sha256-${createHash('sha256').update(scripts[0]!).digest('base64')}'`);
    const nonce = /style-src 'nonce-([^']+)'/.exec(csp)![1];
    expect(r.text).toContain(`<style nonce="${nonce}">`);
    // Nothing is fetched from elsewhere, and values are never written as HTML.
    expect(r.text).not.toMatch(/(src|href)="https?:/);
    expect(scripts[0]).not.toContain('innerHTML');
    expect(r.headers.get('cache-control')).toBe('no-store');
  });

  it('at /admin/ (a trailing slash, as typed or bookmarked): a 308 to /admin', async () => {
    const r = await h.req('GET', '/admin/', undefined, null);
    expect(r.status).toBe(308);
    expect(r.headers.get('location')).toBe('/admin');
    expect(r.text).toBe('');
  });

  it('holds no data: the API calls it makes need a token like any other', async () => {
    const r = await h.req('GET', '/admin', undefined, null);
    expect(r.text).not.toContain(h.info.server_id);
    expect((await h.req('GET', '/v1/entitlements', undefined, null)).status).toBe(401);
  });
});

describe('the admin page as it ships', () => {
  it('is the same in dist/cli.cjs, and in the executable alone in an empty folder', async () => {
    const exe = join(ROOT, 'dist', 'bp-license-server');
    for (const alone of [false, true]) {
      const dir = tempDir();
      try {
        createIdentity(join(dir, 'data'), Date.now());
        openStore(dataPaths(join(dir, 'data')).db).close();
        // The executable is copied alone into the folder and run there with no environment: the
        // page comes from inside it.
        if (alone) copyFileSync(exe, join(dir, 'bp-license-server'));
        const server = await startServe(
          alone ? ['./bp-license-server', []] : CLI,
          ['--data-dir', './data', '--host', '127.0.0.1', '--port', '0'],
          alone ? { cwd: dir, env: {} } : { cwd: dir },
        );
        const r = await fetch(`${server.base}/admin`);
        const html = await r.text();
        expect(r.status).toBe(200);
        expect(pageScripts(html)).toEqual([SCRIPT]);
        expect(await server.stop()).toEqual({ code: 0, signal: null });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }, 60_000);
});
