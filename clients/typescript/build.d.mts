/** Builds clients/typescript/dist: index.js (ESM), index.cjs, and the type declarations. */
export function buildSdk(): Promise<void>;
