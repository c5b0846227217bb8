// Replaced at build time by esbuild's define; the source fallback serves tests.
declare const __BPLS_VERSION__: string | undefined;
export const VERSION: string =
  typeof __BPLS_VERSION__ === 'string' ? __BPLS_VERSION__ : '0.1.0-dev';
