// Child process of the bench: lease-token verifications per second with the built TypeScript SDK
// (clients/typescript/dist), one thread, the same token and key list each time (as a client checks
// its own token). Prints one JSON line. Usage: node bench/sdk-verify.mjs <token.json> <ms>
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
console.log(JSON.stringify({ verify_per_s: n / ((performance.now() - t0) / 1000) }));
