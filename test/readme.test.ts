// The README is the admin's manual: its error table must be the one in errors.ts.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_DESCRIPTIONS, ERROR_STATUS, type ErrorCode } from '../src/errors.ts';
import { ROLE_PERMISSIONS, ROUTES } from '../src/http/permissions.ts';
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

  it('shows the two set-up commands', () => {
    expect(readme).toContain('make run');
    expect(readme).toContain('make test');
  });
});
