/** Builds dist/bp-license-server (Node SEA). `bundle: false` reuses an existing dist/cli.cjs. */
export function buildBinary(options?: { bundle?: boolean }): Promise<void>;
