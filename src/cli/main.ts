import { Command, CommanderError, Help, type Option } from 'commander';
import { AppError } from '../errors.ts';
import { resolveGlobal, type GlobalConfig } from '../config.ts';
import { openContext, type Context } from '../context.ts';
import { VERSION } from '../version.ts';
import { emitEnvelope, emitError, type CliIo } from './io.ts';
import { registerInit } from './commands/init.ts';
import { registerServe } from './commands/serve.ts';
import { registerEntitlements } from './commands/entitlements.ts';
import { registerTokens } from './commands/tokens.ts';
import { registerLeases } from './commands/leases.ts';
import { registerKeys } from './commands/keys.ts';
import { registerSeats } from './commands/seats.ts';
import { registerInstallations } from './commands/installations.ts';
import { registerSync } from './commands/sync.ts';
import { registerVendor } from './commands/vendor.ts';
import { registerAudit } from './commands/audit.ts';
import { registerBackup } from './commands/backup.ts';
import { NativeLoadError } from '../storage/native.ts';
import { storageFailure } from '../storage/failures.ts';
import { actionOf, fileError } from '../file-errors.ts';

/** What every command gets: the io, the resolved global options, and a way to open the data dir. */
export interface CommandKit {
  io: CliIo;
  globals(cmd: Command): GlobalConfig;
  /** Opens the data directory, runs fn, closes it again. */
  withContext<T>(cmd: Command, fn: (ctx: Context, g: GlobalConfig) => T | Promise<T>): Promise<T>;
  /** Set by a command that wants another exit code than 0 without throwing (e.g. audit verify). */
  setExitCode(code: number): void;
}

/** Runs the CLI. Returns the exit code: 0 ok, 1 failed, 2 usage. Never calls process.exit. */
export async function run(argv: string[], io: CliIo): Promise<number> {
  let exitCode = 0;
  let jsonWanted = argv.includes('--json');
  const kit: CommandKit = {
    io,
    globals(cmd) {
      const g = resolveGlobal(cmd.optsWithGlobals(), io.env, io.cwd);
      jsonWanted = g.json;
      return g;
    },
    async withContext(cmd, fn) {
      const g = kit.globals(cmd);
      const ctx = openContext({
        dataDir: g.dataDir,
        database: g.database,
        nativeCacheDir: g.nativeCacheDir,
        durability: g.durability,
      });
      // A migration this command applied may have something to say (e.g. subjects merged): stderr, so --json output stays clean.
      for (const n of ctx.store.migrationNotes()) io.stderr(`note: ${n.message}\n`);
      try {
        return await fn(ctx, g);
      } finally {
        ctx.close();
      }
    },
    setExitCode(code) {
      exitCode = code;
    },
  };

  const program = buildProgram(kit);

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0;
      // Commander has told a person on stderr already; a script asking for --json gets the same
      // envelope as every other failure on stdout.
      if (jsonWanted) emitEnvelope(io, usageError(err));
      return 2;
    }
    const appErr = toAppError(err);
    emitError(io, jsonWanted, appErr);
    return appErr.code === 'invalid_request' && appErr.details.usage === true ? 2 : 1;
  }
}

/**
 * The whole command tree, every command registered and configured (usage errors exit 2, output
 * through `kit.io`, required options marked in --help). Parses nothing.
 */
export function buildProgram(kit: CommandKit): Command {
  const io = kit.io;
  const program = new Command('bp-license-server');
  program
    .description(
      'Big Picture local license server: entitlements, seats and signed lease tokens for air-gapped networks',
    )
    .version(VERSION, '-V, --version', 'print the version')
    .option('--data-dir <dir>', 'data directory (env BPLS_DATA_DIR, default ./data)')
    .option(
      '--database <url>',
      'run on PostgreSQL (postgres://…) instead of SQLite in the data directory, which then keeps the identity files only (env BPLS_DATABASE_URL)',
    )
    .option(
      '--native-cache-dir <dir>',
      'where the single executable unpacks its SQLite addon; must allow exec (env BPLS_NATIVE_CACHE_DIR)',
    )
    .option('--json', 'machine-readable output: the result object, or the error envelope')
    .showHelpAfterError('(run with --help for usage)')
    // Subcommands made after this inherit it: a required option says so in every --help.
    .configureHelp({ optionDescription: describeOption })
    .enablePositionalOptions(false)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout(s), writeErr: (s) => io.stderr(s) });

  registerInit(program, kit);
  registerServe(program, kit);
  registerEntitlements(program, kit);
  registerTokens(program, kit);
  registerLeases(program, kit);
  registerKeys(program, kit);
  registerSeats(program, kit);
  registerInstallations(program, kit);
  registerSync(program, kit);
  registerVendor(program, kit);
  registerAudit(program, kit);
  registerBackup(program, kit);

  // Every subcommand reports usage errors the same way and exits 2.
  const configure = (cmd: Command) => {
    cmd
      .exitOverride()
      .configureOutput({ writeOut: (s) => io.stdout(s), writeErr: (s) => io.stderr(s) })
      .showHelpAfterError('(run with --help for usage)');
    cmd.commands.forEach(configure);
  };
  program.commands.forEach(configure);

  return program;
}

/** An option's line in --help: commander's own text, and "(required)" for a required option. */
function describeOption(this: Help, option: Option): string {
  const text = Help.prototype.optionDescription.call(this, option);
  return option.mandatory ? `${text} (required)` : text;
}

/**
 * A usage error commander found (unknown option, missing argument or required option, excess
 * arguments, unknown command) as our `invalid_request` with `details.usage` (exit 2), its text
 * without commander's `error: ` prefix.
 */
function usageError(err: CommanderError): AppError {
  // A command group run without its subcommand: commander shows the group's help on stderr.
  const message =
    err.code === 'commander.help'
      ? 'a command is needed: the help above lists them'
      : err.message.replace(/^error: /, '');
  return new AppError('invalid_request', message, {
    usage: true,
    commander_code: err.code.replace(/^commander\./, ''),
  });
}

function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof NativeLoadError)
    return new AppError(
      'storage_unavailable',
      err.message,
      {},
      'pass --native-cache-dir DIR (or BPLS_NATIVE_CACHE_DIR) on a file system that allows exec',
    );
  // A file named in the error (the path of an errno error) is said with its name; SQLite's and
  // the database's own failures have their own words.
  const file = fileError(err, { action: actionOf(err) });
  if (file && (err as NodeJS.ErrnoException).path) return file;
  const storage = storageFailure(err);
  if (storage) return storage;
  if (file) return file;
  const e = err as NodeJS.ErrnoException;
  if (e && (e.code === 'SQLITE_CORRUPT' || e.code === 'SQLITE_NOTADB'))
    return new AppError(
      'storage_unavailable',
      `the database is damaged: ${e.message}`,
      { sqlite_code: e.code },
      'run audit verify; restore license.db from the latest good backup',
    );
  if (e && typeof e.code === 'string' && e.code.startsWith('SQLITE_')) {
    return new AppError('internal', `database error: ${e.message}`, { sqlite_code: e.code });
  }
  return new AppError('internal', `unexpected error: ${(err as Error)?.message ?? String(err)}`);
}
