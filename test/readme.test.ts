// The README is the admin's manual: its error table must be the one in errors.ts.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_DESCRIPTIONS, ERROR_STATUS, type ErrorCode } from '../src/errors.ts';
import { ROLE_PERMISSIONS, ROUTES } from '../src/http/permissions.ts';
import { POLICY_FIELD_NAMES } from '../src/schemas.ts';
import { readmeBlocks } from './readme-blocks.ts';
import { ROOT } from './spawn.ts';

const readme = readFileSync(`${ROOT}README.md`, 'utf8');

describe('README', () => {
  it('lists every error code with its status and meaning, as errors.ts has them', () => {
    for (const code of Object.keys(ERROR_STATUS) as ErrorCode[]) {
      expect(readme).toContain(
        `| \`${code}\` | ${ERROR_STATUS[code]} | ${ERROR_DESCRIPTIONS[code]} |`,
      );
    }
  });

  it('lists every role with its permissions', () => {
    for (const [role, perms] of Object.entries(ROLE_PERMISSIONS)) {
      expect(readme).toContain(`| \`${role}\` | ${perms.join(', ')} |`);
    }
  });

  it('prints the permission of every admin route, as the table in permissions.ts has it', () => {
    for (const [route, rule] of Object.entries(ROUTES)) {
      expect(readme).toContain(
        `| \`${route}\` | ${rule.permission} | ${'global' in rule ? 'yes' : 'no'} |`,
      );
    }
  });

  it('gives each section its own shell variables: none is assigned in two sections', () => {
    // The blocks run in order in one shell, so a reader who jumps back to a section finds its
    // variables as that section left them only if no later section reassigns them.
    const lines = readme.split('\n');
    const sectionOf = (line: number) =>
      lines
        .slice(0, line)
        .findLast((l) => /^#{2,4} /.test(l))
        ?.replace(/^#+ /, '');
    const where = new Map<string, Set<string>>();
    for (const block of readmeBlocks(readme).filter((b) => b.lang === 'sh')) {
      for (const m of block.text.matchAll(/^(?:export )?([A-Z][A-Z0-9_]*)=/gm)) {
        const sections = where.get(m[1]!) ?? new Set<string>();
        sections.add(sectionOf(block.line) ?? '');
        where.set(m[1]!, sections);
      }
    }
    const reused = [...where]
      .filter(([, s]) => s.size > 1)
      .map(([v, s]) => `${v}: ${[...s].join(' / ')}`);
    expect(where.size).toBeGreaterThan(5);
    expect(reused).toEqual([]);
  });

  it('lists every /v1 admin route of permissions.ts in the HTTP API table, with its permission', () => {
    // The table under "HTTP API" is the complete map of /v1; the Template Licensing face's routes
    // (/api/v1) have their own table, checked with the permissions above.
    const start = readme.indexOf('\n## HTTP API\n');
    const table = readme.slice(start, readme.indexOf('\n### ', start));
    const rows = new Map<string, string>();
    for (const m of table.matchAll(/^\| `([A-Z]+(?:` \/ `[A-Z]+)*) ([^`]+)` \| ([^|]+) \|/gm))
      for (const method of m[1]!.split('` / `')) rows.set(`${method} ${m[2]}`, m[3]!.trim());
    const missing = Object.entries(ROUTES)
      .filter(([route]) => route.includes(' /v1/'))
      .map(([route, rule]) => [route.replace(/:(\w+)/g, '{$1}'), rule.permission])
      .filter(([route, permission]) => rows.get(route!) !== permission)
      .map(([route]) => route);
    expect(rows.size).toBeGreaterThan(30);
    expect(missing).toEqual([]);
  });

  it('lists every policy_json field of the schema in the policy table', () => {
    const start = readme.indexOf('`policy_json`:\n\n| field | meaning |');
    expect(start).toBeGreaterThan(0);
    const table = readme.slice(start, readme.indexOf('\n\n', start + 20));
    const rows = [...table.matchAll(/^\| `(\w+)` \|/gm)].map((m) => m[1]);
    expect(POLICY_FIELD_NAMES.length).toBeGreaterThan(10);
    expect(POLICY_FIELD_NAMES.filter((f) => !rows.includes(f))).toEqual([]);
  });

  it('runs the seed requests it shows as written: each $BASE form is the same request', () => {
    const blocks = readmeBlocks(readme);
    const seed = blocks.filter((b) => b.text.includes('http://localhost:8080/v1/'));
    expect(seed).toHaveLength(2);
    for (const b of seed) {
      const run = blocks[blocks.indexOf(b) + 1]!;
      const request = run.text
        .split('\n')
        .filter((l) => !l.startsWith('# '))
        .join('\n');
      expect(request).toBe(b.text.replace('http://localhost:8080', '$BASE'));
    }
  });

  it('introduces every tenant and product of the demo data (scripts/demo.mjs) under Set-up', () => {
    const demo = readFileSync(`${ROOT}scripts/demo.mjs`, 'utf8');
    const made = [...demo.matchAll(/'--tenant',\s*'([^']+)',\s*'--product',\s*'([^']+)'/g)];
    expect(made).toHaveLength(4);
    const setUp = readme.slice(
      readme.indexOf('## Set-up'),
      readme.indexOf('## Install on a server'),
    );
    for (const [, tenant, product] of made)
      expect(setUp).toContain(`| \`${tenant}\` | \`${product}\` |`);
  });

  it('shows the two set-up commands', () => {
    expect(readme).toContain('make run');
    expect(readme).toContain('make test');
  });
});
