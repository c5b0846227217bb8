// Every command's --help: required options marked "(required)", the defaults it shows the ones the
// code uses. Walks the real command tree (buildProgram), then runs one --help for real.
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram, run, type CommandKit } from './main.ts';
import type { CliIo } from './io.ts';
import { resolveServe, SERVE_DEFAULTS } from '../config.ts';

function captureIo(): CliIo & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    stdout: (s) => void out.push(s),
    stderr: (s) => void err.push(s),
    env: {},
    cwd: '/',
    isTTY: false,
  };
}

/** Every command of the tree, with its path (`entitlements create`), the program itself first. */
function commands(): Array<{ path: string[]; cmd: Command }> {
  const kit: CommandKit = {
    io: captureIo(),
    globals: () => {
      throw new Error('--help opens nothing');
    },
    withContext: () => {
      throw new Error('--help opens nothing');
    },
    setExitCode: () => {},
  };
  const all: Array<{ path: string[]; cmd: Command }> = [];
  const walk = (cmd: Command, path: string[]) => {
    all.push({ path, cmd });
    for (const c of cmd.commands) walk(c, [...path, c.name()]);
  };
  walk(buildProgram(kit), []);
  return all;
}

describe('--help on every command', () => {
  const tree = commands();

  it('walks the whole tree (every group and its commands)', () => {
    const paths = tree.map((t) => t.path.join(' '));
    expect(paths).toEqual(
      expect.arrayContaining([
        'init',
        'serve',
        'entitlements create',
        'sync export',
        'vendor sign',
      ]),
    );
    expect(paths.length).toBeGreaterThan(35);
  });

  it.each(tree.map((t) => [t.path.join(' ') || '(program)', t] as const))(
    '%s: every required option says "(required)", every commander default is shown',
    async (_, { path, cmd }) => {
      const io = captureIo();
      expect(await run([...path, '--help'], io)).toBe(0);
      const help = io.out.join('');
      expect(help).toMatch(/^Usage: bp-license-server/);
      // One option's text in the help: from its flags to the next option's flags.
      const lines = help.split('\n');
      for (const o of cmd.options) {
        const at = lines.findIndex((l) => l.trimStart().startsWith(o.flags));
        expect(at, `${o.flags} in ${path.join(' ')} --help`).toBeGreaterThan(-1);
        let text = lines[at]!;
        for (let i = at + 1; i < lines.length && /^ {20,}\S/.test(lines[i]!); i++)
          text += ` ${lines[i]!.trim()}`;
        if (o.mandatory) expect(text, o.flags).toMatch(/\(required\)$/);
        else expect(text, o.flags).not.toMatch(/\(required\)/);
        const dflt = o.defaultValue as unknown;
        if (dflt !== undefined && !(Array.isArray(dflt) && dflt.length === 0))
          expect(text, o.flags).toContain(`(default: ${JSON.stringify(dflt)})`);
      }
    },
  );

  it("serve's help shows the defaults resolveServe uses", async () => {
    const used = resolveServe({}, {});
    expect(used).toMatchObject({
      host: SERVE_DEFAULTS.host,
      port: SERVE_DEFAULTS.port,
      logLevel: SERVE_DEFAULTS.logLevel,
      sweepIntervalSeconds: SERVE_DEFAULTS.sweepIntervalSeconds,
      defaultLeaseTtlSeconds: SERVE_DEFAULTS.leaseTtlSeconds,
    });
    const io = captureIo();
    expect(await run(['serve', '--help'], io)).toBe(0);
    const help = io.out.join('').replace(/\s+/g, ' ');
    for (const said of [
      `BPLS_HOST, default ${used.host})`,
      `BPLS_PORT, default ${used.port})`,
      `BPLS_LOG_LEVEL, default ${used.logLevel})`,
      `BPLS_SWEEP_INTERVAL, default ${used.sweepIntervalSeconds})`,
      `BPLS_LEASE_TTL, default ${used.defaultLeaseTtlSeconds})`,
    ])
      expect(help).toContain(said);
  });
});
