// Leases a seat, keeps it while the program runs, gives it back on Ctrl-C or SIGTERM.
//
//   make run                                   (another terminal: the demo server on :8080)
//   node clients/typescript/examples/lease.mjs
//
// Settings from the environment: BPLS_URL (comma-separated for failover, default
// http://127.0.0.1:8080), BPLS_PRODUCT (your-product-id), BPLS_TENANT (customer-tenant-id),
// BPLS_USER (user_123). In an application, import from '@bigpicture/license-client'.
import { LicenseClient, LicenseError, Subject } from '../dist/index.js';

const client = new LicenseClient({
  urls: (process.env.BPLS_URL ?? 'http://127.0.0.1:8080').split(','),
});

let lease;
try {
  lease = await client.requestLease({
    product: process.env.BPLS_PRODUCT ?? 'your-product-id',
    tenant: process.env.BPLS_TENANT ?? 'customer-tenant-id',
    subject: Subject.user(process.env.BPLS_USER ?? 'user_123'),
  });
} catch (err) {
  if (err instanceof LicenseError) {
    console.error(`no license: ${err.code}: ${err.message}`);
    process.exit(1);
  }
  throw err;
}

console.log(
  `leased ${lease.id} until ${lease.expiresAt.toISOString()}, features: ${lease.features.join(', ') || '(none)'}`,
);
lease.on('renewed', (l) => console.log(`renewed until ${l.expiresAt.toISOString()}`));
lease.on('error', (err) => console.error(`renewal failed, retrying: ${err.code}`));
lease.on('revoked', () => {
  console.error('the license server revoked this lease');
  process.exit(3);
});
lease.on('lost', () => {
  console.error('lease lost: no license server renewed it in time');
  process.exit(4);
});

// The application's work goes here; the lease renews itself in the background.
setInterval(() => {}, 1 << 30);
