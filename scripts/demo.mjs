// make run: creates a demo data directory with a few entitlements, once, and prints how to use it.
// The admin token is kept beside the directory (DIR.admin-token, git-ignored): it is demo data.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';

const dir = resolve(process.argv[2] ?? 'demo-data');
const port = process.argv[3] ?? '8080';
const tokenFile = `${dir}.admin-token`;
const cli = (...args) =>
  execFileSync(process.execPath, ['dist/cli.cjs', ...args, '--data-dir', dir, '--json'], {
    encoding: 'utf8',
  });

if (!existsSync(dir)) {
  const init = JSON.parse(cli('init'));
  writeFileSync(tokenFile, `${init.admin_token}\n`, { mode: 0o600 });
  const year = new Date().getUTCFullYear();
  const term = ['--starts', `${year}-01-01T00:00:00Z`, '--ends', `${year + 1}-12-31T23:59:59Z`];
  cli(
    'entitlements',
    'create',
    '--tenant',
    'customer-tenant-id',
    '--product',
    'your-product-id',
    '--type',
    'concurrent',
    '--max-seats',
    '10',
    '--features',
    'feature-a,feature-b',
    ...term,
  );
  cli(
    'entitlements',
    'create',
    '--tenant',
    'customer-tenant-id',
    '--product',
    'cad-suite',
    '--type',
    'per_user',
    '--max-seats',
    '50',
    '--features',
    'modeling,render',
    ...term,
  );
  cli(
    'entitlements',
    'create',
    '--tenant',
    'lab-tenant',
    '--product',
    'cad-suite',
    '--type',
    'per_machine',
    '--max-seats',
    '5',
    ...term,
  );
  cli(
    'entitlements',
    'create',
    '--tenant',
    'lab-tenant',
    '--product',
    'viewer',
    '--type',
    'feature_based',
    '--features',
    'view,export',
    ...term,
  );
  console.log(`demo data created in ${dir}`);
}
const token = existsSync(tokenFile)
  ? readFileSync(tokenFile, 'utf8').trim()
  : '(unknown: the demo directory was made elsewhere)';
/** The folder as a person would type it from here: relative below the current folder, else absolute. */
const shown = (d) =>
  relative(process.cwd(), d).startsWith('..') ? d : relative(process.cwd(), d) || '.';
console.log(`admin token: ${token}`);
console.log(`admin console: http://127.0.0.1:${port}/admin (sign in with the admin token)`);
console.log(
  `CLI on this demo (its own Node 24): bin/bp-license-server --data-dir ${shown(dir)} entitlements list`,
);
console.log('try:');
console.log(
  `  curl -s http://127.0.0.1:${port}/v1/entitlements -H "Authorization: Bearer ${token}"`,
);
// The README's examples use these (README "Entitlements"); printed with this demo's port and file.
console.log("the README's examples, in a shell where these are set:");
console.log(`  export BASE=http://127.0.0.1:${port}`);
console.log(`  export LOCAL_API_TOKEN=$(cat ${shown(tokenFile)})`);
console.log('  export T=$LOCAL_API_TOKEN');
