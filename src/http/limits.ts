/**
 * How much of a request body each route may send, and how long it may take to send it: one table
 * for the dispatch (http/dispatch.ts), which reads every body with the body reader (http/body.ts)
 * under these caps, on the server and through app.request() alike.
 */

/** A lease request is well under 1 KiB; 16 KiB leaves room for long ids and features. */
export const LEASE_BODY_LIMIT = 16 << 10;
/** Every admin route but the bulk import. */
export const BODY_LIMIT = 1 << 20;
/** POST /v1/entitlements/import, one at a time. */
export const IMPORT_BODY_LIMIT = 64 << 20;
/**
 * Bytes of request bodies the server holds across all connections, by default
 * (ServeConfig.bodyBudgetBytes). 32 MiB: with 1,500 clients each trickling a 1 MB body, the
 * server peaked at 329 MB with 64 MiB and 291 MB with 32 MiB (make chaos); the bulk import is not
 * counted (one at a time, under its own 64 MiB cap).
 */
export const DEFAULT_BODY_BUDGET = 32 << 20;

/**
 * Open connections at most, by default (ServeConfig.maxConnections). Each costs the server a few
 * KiB while it idles (its headers have 15 s to arrive); 10,000 bounds that near 100 MB, far above
 * what a license server's network needs at once (clients lease and renew, they do not hold
 * connections).
 */
export const MAX_CONNECTIONS = 10_000;

/** A real client sends its headers at once. */
export const HEADERS_TIMEOUT_MS = 15_000;
/** A lease body arrives in the packet of its headers; 10 s is generous for any real client. */
export const LEASE_BODY_TIMEOUT_MS = 10_000;
/** An admin body (up to 64 MiB for the import) gets a minute. */
export const BODY_TIMEOUT_MS = 60_000;

export const LEASE_PATHS: ReadonlySet<string> = new Set([
  '/v1/license/lease',
  '/v1/license/lease/renew',
  '/v1/license/lease/release',
]);
export const IMPORT_PATH = '/v1/entitlements/import';
/** Streamed to a temporary file by its route, which enforces the bundle size cap itself. */
export const STREAMED_PATH = '/v1/sync/import';

/** The body cap of a path: 16 KiB on the lease routes, 64 MiB for the bulk import, else 1 MiB. */
export function bodyLimitFor(path: string): number {
  return LEASE_PATHS.has(path)
    ? LEASE_BODY_LIMIT
    : path === IMPORT_PATH
      ? IMPORT_BODY_LIMIT
      : BODY_LIMIT;
}

/** "16 KiB", "1 MiB": how limits read in messages. */
export function formatBytes(n: number): string {
  return n >= 1 << 20 ? `${n / (1 << 20)} MiB` : `${Math.round(n / 1024)} KiB`;
}
