import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createHarness, type Harness } from '../../test/helpers.ts';

let h: Harness;
beforeEach(() => {
  h = createHarness();
});
afterEach(() => h.close());

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
    const scripts = [...r.text.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!);
    expect(scripts).toHaveLength(1);
    expect(csp).toContain(`'sha256-${createHash('sha256').update(scripts[0]!).digest('base64')}'`);
    const nonce = /style-src 'nonce-([^']+)'/.exec(csp)![1];
    expect(r.text).toContain(`<style nonce="${nonce}">`);
    // Nothing is fetched from elsewhere, and values are never written as HTML.
    expect(r.text).not.toMatch(/(src|href)="https?:/);
    expect(scripts[0]).not.toContain('innerHTML');
    expect(r.headers.get('cache-control')).toBe('no-store');
  });

  it('holds no data: the API calls it makes need a token like any other', async () => {
    const r = await h.req('GET', '/admin', undefined, null);
    expect(r.text).not.toContain(h.info.server_id);
    expect((await h.req('GET', '/v1/entitlements', undefined, null)).status).toBe(401);
  });
});
