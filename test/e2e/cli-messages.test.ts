// What the spawned CLI says when a person or a script gets something wrong: usage errors as the
// JSON envelope with --json, missing and misplaced fields named, files named, warnings on create.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, killStrays, ROOT, runProcess, startServe } from '../spawn.ts';
import { openStore } from '../../src/storage/store.ts';

let root: string;
let dataDir: string;

const cli = (args: string[], opts: { dir?: string; cwd?: string } = {}) =>
  runProcess(CLI, [...args, '--data-dir', opts.dir ?? dataDir], { cwd: opts.cwd ?? root });

/** How many entitlements the data directory holds (read straight from its database). */
function entitlementCount(dir = dataDir): number {
  const store = openStore(path.join(dir, 'license.db'), { mustExist: true });
  try {
    return store.entitlements.list({ limit: 10_000 }).length;
  } finally {
    store.close();
  }
}

/** The one JSON document on stdout, the error envelope of a failure. */
function envelope(stdout: string): { error: { code: string; message: string; details: any } } {
  return JSON.parse(stdout);
}

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'bpls-cli-msg-'));
  dataDir = path.join(root, 'data');
  const init = await cli(['init', '--json']);
  expect(init.code, init.stderr).toBe(0);
});
afterAll(() => {
  killStrays();
  rmSync(root, { recursive: true, force: true });
});

describe('usage errors with --json', () => {
  it.each([
    [['entitlements', 'create', '--json'], /required option '--tenant <id>' not specified/],
    [['entitlements', 'bogus', '--json'], /unknown command 'bogus'/],
    [['--bogus', 'entitlements', 'list', '--json'], /unknown option '--bogus'/],
    [['entitlements', 'list', '--json', '--limit'], /option '--limit <n>' argument missing/],
    [['entitlements', 'show', '--json'], /missing required argument 'id'/],
    [['entitlements', 'show', 'a', 'b', '--json'], /too many arguments/],
    [['entitlements', '--json'], /a command is needed/],
  ])('%j prints the error envelope on stdout and exits 2', async (args, message) => {
    const r = await cli(args);
    expect(r.code, r.stderr).toBe(2);
    const e = envelope(r.stdout);
    expect(e.error.code).toBe('invalid_request');
    expect(e.error.message).toMatch(message);
    expect(e.error.details.usage).toBe(true);
    // The person at the terminal still reads commander's own text.
    expect(r.stderr).toMatch(/error|Usage/);
    expect(entitlementCount()).toBe(0);
  });

  it('without --json, a usage error leaves stdout empty and exits 2', async () => {
    const r = await cli(['entitlements', 'create']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/required option '--tenant <id>' not specified/);
  });
});

describe('fields named in the CLI face too', () => {
  it('an import item without ends_at: "ends_at is required", nothing imported', async () => {
    const file = path.join(root, 'no-end.json');
    writeFileSync(
      file,
      JSON.stringify([
        {
          tenant_id: 't1',
          product_id: 'p1',
          policy_json: { type: 'concurrent', max_seats: 2 },
          starts_at: '2030-01-01T00:00:00Z',
        },
      ]),
    );
    const r = await cli(['entitlements', 'import', file, '--json']);
    expect(r.code).toBe(1);
    expect(envelope(r.stdout).error.details.errors[0]).toMatchObject({
      index: 0,
      path: 'ends_at',
      message: 'ends_at is required',
    });
    expect(r.stderr).toContain('item 0 ends_at: ends_at is required');
    expect(r.stderr).not.toMatch(/expected|received|undefined/);
    expect(entitlementCount()).toBe(0);
  });
});

describe('warnings on create in the CLI', () => {
  it('create with an end in the past: made, the warning on stderr and in --json', async () => {
    const dir = path.join(root, 'warn');
    expect((await cli(['init', '--json'], { dir })).code).toBe(0);
    const args = ['entitlements', 'create', '--tenant', 't1', '--product', 'p1', '--type'];
    const past = [...args, 'concurrent', '--max-seats', '2', '--starts', '2024-01-01T00:00:00Z'];
    const human = await cli([...past, '--ends', '2024-12-31T23:59:59Z'], { dir });
    expect(human.code, human.stderr).toBe(0);
    expect(human.stderr).toBe(
      'warning[already_expired]: ends_at 2024-12-31T23:59:59Z is in the past: the entitlement is expired on arrival\n',
    );
    expect(human.stdout).toMatch(/^created ent_\S+ {2}expired/);
    const json = await cli([...past, '--ends', '2024-12-31T23:59:59Z', '--json'], { dir });
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout).warnings).toEqual([
      expect.objectContaining({ code: 'already_expired' }),
    ]);
    expect(entitlementCount(dir)).toBe(2);
  });

  it('import: each warned item on stderr, every item imported', async () => {
    const dir = path.join(root, 'warn-import');
    expect((await cli(['init', '--json'], { dir })).code).toBe(0);
    const file = path.join(root, 'later.json');
    const item = {
      tenant_id: 't1',
      product_id: 'p1',
      policy_json: { type: 'concurrent', max_seats: 2 },
    };
    writeFileSync(
      file,
      JSON.stringify([
        { ...item, starts_at: '2090-01-01T00:00:00Z', ends_at: '2091-01-01T00:00:00Z' },
        { ...item, starts_at: '2020-01-01T00:00:00Z', ends_at: '2090-01-01T00:00:00Z' },
      ]),
    );
    const r = await cli(['entitlements', 'import', file], { dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /^warning\[not_started\]: item 0 \(ent_\S+\): starts_at 2090-01-01T00:00:00Z is in the future/,
    );
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(entitlementCount(dir)).toBe(2);
  });
});

describe('files a command reads or writes are named, never raw errno text', () => {
  const raw = /no such file or directory|, open '|, mkdir '|errno -?\d/;

  it('entitlements import of a missing file: not_found naming the file, nothing imported', async () => {
    const r = await cli(['entitlements', 'import', 'nope.json', '--json']);
    expect(r.code).toBe(1);
    expect(envelope(r.stdout).error).toMatchObject({
      code: 'not_found',
      message: 'cannot read the import file nope.json: ENOENT, no such file or folder',
      details: { errno: 'ENOENT', file: 'nope.json' },
    });
    expect(r.stderr).toContain(
      'hint: check the path; a relative path is taken from the current folder',
    );
    expect(r.stderr).not.toMatch(raw);
    expect(entitlementCount()).toBe(0);
  });

  it('sync import of a missing bundle: not_found naming the bundle, nothing imported', async () => {
    const r = await cli(['sync', 'import', 'nope.bpsync', '--json']);
    expect(r.code).toBe(1);
    expect(envelope(r.stdout).error).toMatchObject({
      code: 'not_found',
      message: 'cannot read the bundle nope.bpsync: ENOENT, no such file or folder',
      details: { errno: 'ENOENT', file: 'nope.bpsync' },
    });
    expect(r.stderr).not.toMatch(raw);
    expect(entitlementCount()).toBe(0);
  });

  it('entitlements import of a folder: said to be a folder', async () => {
    const r = await cli(['entitlements', 'import', root]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `error[invalid_request]: cannot read the import file ${root}: EISDIR, it is a folder, not a file\n`,
    );
  });

  it('backup --out and vendor keygen --out under a file: the folder named', async () => {
    const file = path.join(root, 'plain-file');
    writeFileSync(file, 'x');
    for (const args of [
      ['backup', '--out', path.join(file, 'b')],
      ['vendor', 'keygen', '--out', path.join(file, 'k')],
    ]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toBe(
        `error[invalid_request]: cannot create the folder ${args.at(-1)}: ENOTDIR, a part of the path is a file, not a folder\n`,
      );
    }
  });

  it("a folder under /proc (where Node's recursive mkdir never returns): refused at once, named", async () => {
    for (const args of [
      ['vendor', 'keygen', '--out', '/proc/bpls-x/k'],
      ['backup', '--out', '/proc/bpls-x/b'],
    ]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(`^error\\[not_found\\]: cannot create the folder ${args.at(-1)}: ENOENT`),
      );
    }
  });

  it('vendor sign with a missing key, and serve with a missing TLS certificate: each file named', async () => {
    const sign = await cli([
      'vendor',
      'sign',
      '--key',
      'no-vendor.secret',
      '--server-id',
      'srv',
      '--seq',
      '1',
      '--in',
      'content.json',
      '--out',
      'b.bpsync',
    ]);
    expect(sign.code).toBe(1);
    expect(sign.stderr).toMatch(
      /^error\[not_found\]: cannot read the vendor key \S*no-vendor\.secret: ENOENT, no such file or folder\n/,
    );
    const serve = await cli([
      'serve',
      '--port',
      '0',
      '--tls-cert',
      'no.pem',
      '--tls-key',
      'no.key',
    ]);
    expect(serve.code).toBe(1);
    expect(serve.stdout).toBe('');
    expect(serve.stderr).toMatch(
      /^error\[not_found\]: cannot read the TLS certificate \(--tls-cert\) no\.pem: ENOENT, no such file or folder\n/,
    );
    expect(serve.stderr).not.toMatch(raw);
  });
});

describe('the sync folder defaults to <data dir>/sync-bundles, whatever the current folder', () => {
  it('sync export without --out writes to <data dir>/sync-bundles/outbox from any folder', async () => {
    const dir = path.join(root, 'sync-default');
    expect((await cli(['init', '--json'], { dir })).code).toBe(0);
    const elsewhere = mkdtempSync(path.join(root, 'elsewhere-'));
    const r = await cli(['sync', 'export', '--json'], { dir, cwd: elsewhere });
    expect(r.code, r.stderr).toBe(0);
    const file = JSON.parse(r.stdout).file as string;
    expect(path.dirname(file)).toBe(path.join(dir, 'sync-bundles', 'outbox'));
    expect(existsSync(file)).toBe(true);
    expect(readdirSync(elsewhere)).toEqual([]);
    // --out relative to the current folder, as every path on a command line.
    const named = await cli(['sync', 'export', '--out', 'out', '--json'], { dir, cwd: elsewhere });
    expect(named.code, named.stderr).toBe(0);
    expect(path.dirname(JSON.parse(named.stdout).file)).toBe(path.join(elsewhere, 'out'));
  });

  it('serve watches <data dir>/sync-bundles/inbox when it exists, not ./sync-bundles', async () => {
    const dir = path.join(root, 'sync-default');
    const elsewhere = mkdtempSync(path.join(root, 'cwd-'));
    mkdirSync(path.join(elsewhere, 'sync-bundles'));
    const serve = await startServe(CLI, ['--data-dir', dir, '--port', '0'], { cwd: elsewhere });
    try {
      await expect
        .poll(() => serve.stderr(), { timeout: 10_000 })
        .toContain('watching sync folder');
      expect(serve.stderr()).toContain(JSON.stringify(path.join(dir, 'sync-bundles', 'inbox')));
      expect(readdirSync(path.join(elsewhere, 'sync-bundles'))).toEqual([]);
    } finally {
      expect((await serve.stop()).code).toBe(0);
    }
  });
});

describe('--help, spawned', () => {
  it('entitlements create --help marks its required options', async () => {
    const r = await cli(['entitlements', 'create', '--help']);
    expect(r.code).toBe(0);
    for (const flag of ['--tenant <id>', '--product <id>', '--ends <time>'])
      expect(r.stdout).toMatch(new RegExp(`${flag} +.*\\(required\\)\\n`));
    expect(r.stdout).toMatch(/--starts <time> +RFC 3339 start \(default now\)\n/);
  });
});

describe('init on an initialised directory', () => {
  it('changes nothing, says so and what --force does, exits 0', async () => {
    const before = await cli(['tokens', 'list', '--json']);
    const r = await cli(['init']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(
      `already initialised: ${dataDir} (its server is kept; nothing was changed)`,
    );
    expect(lines.at(-1)).toBe(
      'to start over with a new server: init --force (the old files are moved aside as *.replaced-<time>)',
    );
    expect((await cli(['tokens', 'list', '--json'])).stdout).toBe(before.stdout);
    const json = await cli(['init', '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ created: false, admin_token: null });
  });
});

describe('setup errors are not internal', () => {
  it('the executable with a native cache folder it cannot use: storage_unavailable with its hint', async () => {
    const file = path.join(root, 'not-a-folder');
    writeFileSync(file, 'x');
    const dir = path.join(root, 'never-made');
    const r = await runProcess(
      [path.join(ROOT, 'dist', 'bp-license-server'), []],
      ['init', '--data-dir', dir, '--native-cache-dir', path.join(file, 'cache'), '--json'],
      { cwd: root },
    );
    expect(r.code).toBe(1);
    const e = envelope(r.stdout).error;
    expect(e.code).toBe('storage_unavailable');
    expect(e.message).toMatch(/^cannot write the SQLite engine to the native cache folder /);
    expect(r.stderr).toMatch(/^error\[storage_unavailable\]: /);
    expect(r.stderr).toContain('hint: pass --native-cache-dir DIR');
  });
});

describe('a data directory that holds no server points to the servers next to it', () => {
  /** The CLI in `cwd` with no --data-dir and no BPLS_DATA_DIR: what a newcomer on a checkout types. */
  const bare = (args: string[], cwd: string) => {
    const env = { ...process.env };
    delete env.BPLS_DATA_DIR;
    return runProcess(CLI, args, { cwd, env });
  };

  it('no --data-dir on a checkout whose demo runs on ./demo-data: "did you mean --data-dir demo-data", nothing made', async () => {
    const checkout = mkdtempSync(path.join(root, 'checkout-'));
    const made = await cli(['init', '--json'], { dir: path.join(checkout, 'demo-data') });
    expect(made.code, made.stderr).toBe(0);
    const r = await bare(['entitlements', 'list'], checkout);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error\[not_found\]: .*\/data holds no license server$/m);
    expect(r.stderr).toContain(
      'hint: did you mean --data-dir demo-data (export BPLS_DATA_DIR=demo-data)?',
    );
    // init is offered only as the way to make a NEW server, after the likely intended one.
    expect(r.stderr).toContain(
      'Only to make a NEW, empty server there instead, run: bp-license-server init --data-dir data',
    );
    expect(readdirSync(checkout)).toEqual(['demo-data']);

    const j = await bare(['entitlements', 'list', '--json'], checkout);
    expect(j.code).toBe(1);
    expect(envelope(j.stdout).error).toMatchObject({
      code: 'not_found',
      details: { nearby: ['demo-data'] },
    });
  });

  it('a typo in --data-dir: the sibling that holds a server is named first', async () => {
    const r = await cli(['entitlements', 'list'], { dir: path.join(root, 'dta') });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('hint: did you mean --data-dir data (export BPLS_DATA_DIR=data)?');
    expect(existsSync(path.join(root, 'dta'))).toBe(false);
  });

  it('nothing nearby: init is offered, said to make a NEW, empty server', async () => {
    const lone = mkdtempSync(path.join(tmpdir(), 'bpls-lone-'));
    try {
      const r = await bare(['entitlements', 'list'], lone);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        'hint: run: bp-license-server init --data-dir data (this makes a NEW, empty server',
      );
      expect(readdirSync(lone)).toEqual([]);
    } finally {
      rmSync(lone, { recursive: true, force: true });
    }
  });
});

describe('CLI errors name the flags typed, not the API fields', () => {
  const create = (...args: string[]) =>
    cli(['entitlements', 'create', '--tenant', 'flags', '--product', 'cad', ...args]);

  it.each([
    [
      'a date without a time: --ends, and no follow-on "must be after" line',
      ['--type', 'concurrent', '--max-seats', '2', '--ends', '2027-06-30'],
      'error[invalid_request]: invalid entitlement: --ends: must be an RFC 3339 time such as 2024-01-15T11:30:00Z\n',
      1,
    ],
    [
      'no --type: required, unless --policy gives it',
      ['--ends', '2027-06-30T00:00:00Z'],
      'error[invalid_request]: invalid entitlement: --type is required (or give the type in --policy)\n',
      2,
    ],
    [
      'a policy rule names the flags',
      ['--type', 'feature_based', '--max-seats', '3', '--ends', '2027-06-30T00:00:00Z'],
      'error[invalid_request]: invalid entitlement: feature_based has no seat limit: leave --max-seats out\n',
      1,
    ],
    [
      'a term the wrong way round: --ends and --starts',
      [
        '--type',
        'feature_based',
        '--starts',
        '2028-01-01T00:00:00Z',
        '--ends',
        '2027-06-30T00:00:00Z',
      ],
      'error[invalid_request]: invalid entitlement: --ends must be after --starts\n',
      1,
    ],
  ])('%s', async (_what, args, stderr, code) => {
    const r = await create(...args);
    expect(r.code, r.stderr).toBe(code);
    expect(r.stderr).toBe(stderr);
    expect(entitlementCount()).toBe(0);
  });

  it('tokens create: --tenant for a tenant_admin, the house wording for --role', async () => {
    const before = await cli(['tokens', 'list', '--json']);
    const noTenant = await cli(['tokens', 'create', '--name', 'x', '--role', 'tenant_admin']);
    expect(noTenant.code).toBe(1);
    expect(noTenant.stderr).toBe(
      'error[invalid_request]: invalid options: a tenant_admin token needs --tenant\n',
    );
    const owner = await cli(['tokens', 'create', '--name', 'x', '--role', 'owner', '--json']);
    expect(owner.code).toBe(1);
    expect(envelope(owner.stdout).error).toEqual({
      code: 'invalid_request',
      message: 'invalid options: --role must be one of admin, tenant_admin, reader',
      // The issues stay the API's, as the HTTP face answers them (faces-parity.test.ts).
      details: {
        issues: [{ path: 'role', message: 'role must be one of admin, tenant_admin, reader' }],
      },
    });
    expect((await cli(['tokens', 'list', '--json'])).stdout).toBe(before.stdout);
  });

  it('list filters and serve options too: --status, --log-level', async () => {
    const status = await cli(['entitlements', 'list', '--status', 'bogus']);
    expect(status.code).toBe(1);
    expect(status.stderr).toBe(
      'error[invalid_request]: invalid options: --status must be one of active, suspended, revoked, pending, expired, grace\n',
    );
    const serve = await cli(['serve', '--port', '0', '--log-level', 'loud']);
    expect(serve.code).not.toBe(0);
    expect(serve.stderr).toContain(
      'invalid serve options: --log-level (or BPLS_LOG_LEVEL) must be one of debug, info, warn, error',
    );
  });
});
