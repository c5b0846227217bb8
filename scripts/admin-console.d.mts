/** The import suffix that asks for a module bundled as an inline script. */
export const SCRIPT_SUFFIX: '?script';
/** Bundles `entry` (an absolute path) into one self-contained browser script (an IIFE). */
export function bundleScript(entry: string): Promise<string>;
/** The esbuild plugin: `<module>?script` imports resolve to the module's bundled text. */
export const inlineScriptPlugin: import('esbuild').Plugin;
