import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from './errors.ts';
import { parseIntegerOption, parseOptionalInteger } from './integer-option.ts';
import { run } from './cli/main.ts';
import type { CliIo } from './cli/io.ts';
import { tempDir } from '../test/helpers.ts';

describe('parseIntegerOption', () => {
  it('reads decimal digits within the range, leading zeros included', () => {
    expect(parseIntegerOption('0', { name: '--port', max: 65535 })).toBe(0);
    expect(parseIntegerOption('0080', { name: '--port', max: 65535 })).toBe(80);
    expect(parseIntegerOption('65535', { name: '--port', max: 65535 })).toBe(65535);
    expect(parseIntegerOption('9007199254740991', { name: '--seq', min: 1 })).toBe(
      Number.MAX_SAFE_INTEGER,
    );
    expect(parseOptionalInteger(undefined, { name: '--limit' })).toBeUndefined();
    expect(parseOptionalInteger('7', { name: '--limit' })).toBe(7);
  });

  it.each([
    '',
    ' 8',
    '8 ',
    '+8',
    '-8',
    '8.0',
    '1e3',
    '0x50',
    '٣', // an Arabic-Indic three: not a decimal digit here
    '9007199254740992',
    '12345678901234567',
  ])('refuses %j as a usage error with one wording', (raw) => {
    let err: unknown;
    try {
      parseIntegerOption(raw, { name: '--seq', min: 1 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AppError);
    const e = err as AppError;
    expect(e.code).toBe('invalid_request');
    expect(e.message).toBe('--seq must be a whole number, at least 1');
    expect(e.details).toEqual({
      usage: true,
      issues: [{ path: '--seq', message: '--seq must be a whole number, at least 1' }],
    });
  });

  it('states the range and the unit when there are', () => {
    expect(() =>
      parseIntegerOption('5', {
        name: '--sync-poll-ms',
        min: 10,
        max: 3_600_000,
        unit: 'milliseconds',
      }),
    ).toThrow('--sync-poll-ms must be a whole number of milliseconds, 10 to 3600000');
    expect(() => parseIntegerOption('65536', { name: 'BPLS_PORT', max: 65535 })).toThrow(
      'BPLS_PORT must be a whole number, 0 to 65535',
    );
  });
});

describe('every command reads its whole numbers the same way', () => {
  let root: string;
  let dataDir: string;

  /** Runs the CLI in this process (the real commands, a real data directory). */
  async function cli(args: string[]) {
    let stdout = '';
    let stderr = '';
    const io: CliIo = {
      stdout: (s) => void (stdout += s),
      stderr: (s) => void (stderr += s),
      env: {},
      cwd: root,
      isTTY: false,
    };
    const code = await run([...args, '--data-dir', dataDir], io);
    return { code, stdout, stderr };
  }
  const counts = async () => ({
    entitlements: JSON.parse((await cli(['entitlements', 'list', '--json'])).stdout).data.length,
    tokens: JSON.parse((await cli(['tokens', 'list', '--json'])).stdout).data.length,
    audit: JSON.parse((await cli(['audit', 'verify', '--json'])).stdout).rows,
  });

  let ent: string;
  beforeAll(async () => {
    root = tempDir('bpls-int-');
    dataDir = join(root, 'data');
    mkdirSync(join(root, 'sync'));
    expect((await cli(['init'])).code).toBe(0);
    const made = await cli([
      'entitlements',
      'create',
      '--tenant',
      't',
      '--product',
      'p',
      '--type',
      'per_user',
      '--max-seats',
      '002',
      '--ends',
      '2099-01-01T00:00:00Z',
      '--json',
    ]);
    expect(made.code, made.stderr).toBe(0);
    ent = JSON.parse(made.stdout).entitlement_id;
    expect(JSON.parse(made.stdout).policy_json.max_seats).toBe(2);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const create = [
    'entitlements',
    'create',
    '--tenant',
    't',
    '--product',
    'p',
    '--ends',
    '2099-01-01T00:00:00Z',
  ];
  const cases: Array<[string, () => string[], string]> = [
    [
      'entitlements create --max-seats',
      () => [...create, '--type', 'concurrent', '--max-seats', '1.5'],
      '--max-seats must be a whole number, at least 0',
    ],
    [
      'entitlements create --lease-ttl',
      () => [...create, '--type', 'concurrent', '--max-seats', '3', '--lease-ttl', '1e3'],
      '--lease-ttl must be a whole number of seconds, at least 0',
    ],
    [
      'entitlements update --grace-days',
      () => ['entitlements', 'update', ent, '--grace-days', ' 5'],
      '--grace-days must be a whole number of days, at least 0',
    ],
    [
      'entitlements renew --months',
      () => ['entitlements', 'renew', ent, '--months', '0x10'],
      '--months must be a whole number, at least 0',
    ],
    [
      'entitlements usage --days',
      () => ['entitlements', 'usage', ent, '--csv', '--days', 'ten'],
      '--days must be a whole number, at least 0',
    ],
    [
      'entitlements list --limit',
      () => ['entitlements', 'list', '--limit', '10abc'],
      '--limit must be a whole number, at least 0',
    ],
    [
      'leases list --limit',
      () => ['leases', 'list', '--limit', '+5'],
      '--limit must be a whole number, at least 0',
    ],
    [
      'seats list --limit',
      () => ['seats', 'list', ent, '--limit', '5.'],
      '--limit must be a whole number, at least 0',
    ],
    [
      'tokens create --expires-in-days',
      () => ['tokens', 'create', '--name', 'x', '--expires-in-days', '3.5'],
      '--expires-in-days must be a whole number, at least 0',
    ],
    [
      'vendor sign --seq',
      () => [
        'vendor',
        'sign',
        '--key',
        'k',
        '--server-id',
        'srv_x',
        '--seq',
        '0',
        '--in',
        'c.json',
        '--out',
        'o.bpsync',
      ],
      '--seq must be a whole number, at least 1',
    ],
    [
      'vendor sign --exp-days',
      () => [
        'vendor',
        'sign',
        '--key',
        'k',
        '--server-id',
        'srv_x',
        '--seq',
        '1',
        '--exp-days',
        '3651',
        '--in',
        'c.json',
        '--out',
        'o.bpsync',
      ],
      '--exp-days must be a whole number of days, 1 to 3650',
    ],
    [
      'serve --port',
      () => ['serve', '--port', '65536'],
      '--port must be a whole number, 0 to 65535',
    ],
    [
      'serve --sweep-interval',
      () => ['serve', '--sweep-interval', '0'],
      '--sweep-interval must be a whole number of seconds, 1 to 86400',
    ],
    [
      'serve --sync-poll-ms',
      () => ['serve', '--sync-dir', join(root, 'sync'), '--sync-poll-ms', '5'],
      '--sync-poll-ms must be a whole number of milliseconds, 10 to 3600000',
    ],
    [
      'serve --sync-interval',
      () => ['serve', '--sync-url', 'http://127.0.0.1:9', '--no-sync-dir', '--sync-interval', '1h'],
      '--sync-interval must be a whole number of seconds, 1 to 86400',
    ],
  ];

  it.each(cases)('%s: exit 2, one wording, nothing changed', async (_name, args, message) => {
    const before = await counts();
    const r = await cli(args());
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toBe(`error[invalid_request]: ${message}\n`);
    expect(r.stdout).toBe('');
    const asJson = await cli([...args(), '--json']);
    expect(asJson.code).toBe(2);
    expect(JSON.parse(asJson.stdout).error).toMatchObject({
      code: 'invalid_request',
      message,
      details: { usage: true, issues: [{ path: message.split(' ')[0], message }] },
    });
    expect(await counts()).toEqual(before);
  });
});
