// Child process of the bench: lease-token verifications per second with the built TypeScript SDK
// (clients/typescript/dist), one thread, the same token and key list each time (as a client checks
// its own token). Prints one JSON line. Usage: node bench/sdk-verify.mjs <token.json> <ms>
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { verifyLeaseToken } from '../clients/typescript/dist/index.js';

const [file, msText] = process.argv.slice(2);
const { token, keys, product } = JSON.parse(readFileSync(file, 'utf8'));
const ms = Number(msText ?? 2000);
verifyLeaseToken(token, keys, { productId: product }); // fails loudly before timing a broken setup
const t0 = performance.now();
let n = 0;
while (performance.now() - t0 < ms) {
  for (let i = 0; i < 100; i++) verifyLeaseToken(token, keys, { productId: product });
  n += 100;
}
const perS = n / ((performance.now() - t0) / 1000);

// The ceiling: node:crypto's Ed25519 verify alone (OpenSSL), on a message of a lease token's size.
const { publicKey, privateKey } = generateKeyPairSync('ed25519');
const msg = Buffer.alloc(400, 7);
const sig = sign(null, msg, privateKey);
const t1 = performance.now();
let m = 0;
while (performance.now() - t1 < ms) {
  for (let i = 0; i < 100; i++) verify(null, msg, publicKey, sig);
  m += 100;
}
console.log(
  JSON.stringify({
    verify_per_s: perS,
    raw_ed25519_verify_per_s: m / ((performance.now() - t1) / 1000),
  }),
);
