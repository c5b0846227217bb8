import { counted } from '../../plural.ts';
import type { Command } from 'commander';
import { dataPaths } from '../../data-dir.ts';
import { RESTORE_DB_HINT } from '../../storage/integrity.ts';
import { emit } from '../io.ts';
import type { CommandKit } from '../main.ts';

/**
 * audit verify: PRAGMA integrity_check on the whole database, then the audit hash chain (the audit
 * service: domain/audit.ts); exit 1 when the database is damaged or at the first break of the chain.
 */
/** What audit verify says of the database's pages on PostgreSQL, which checks them itself. */
const PG_PAGES = 'PostgreSQL checks its own: data checksums, amcheck';

export function registerAudit(program: Command, kit: CommandKit): void {
  const audit = program.command('audit').description('the append-only, hash-chained audit log');

  audit
    .command('verify')
    .description(
      'check the whole database (PRAGMA integrity_check), then walk the audit hash chain from the first row; exit 1 if the database is damaged or the chain is broken',
    )
    .action(async (_o: unknown, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const problems = ctx.store.integrityProblems('integrity_check');
        if (problems.length > 0) {
          // The chain cannot be trusted (or even read) from a damaged file: report the damage alone.
          kit.setExitCode(1);
          const file = dataPaths(ctx.dataDir).db;
          kit.io.stderr(
            `error[conflict]: ${file} is damaged (PRAGMA integrity_check: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? '; …' : ''})\n`,
          );
          kit.io.stderr(`hint: ${RESTORE_DB_HINT}\n`);
          const r = {
            ok: false,
            integrity_check: { ok: false, problems },
            rows: null,
            head: null,
            first_break: null,
          };
          emit(
            kit.io,
            g.json,
            r,
            () =>
              `database DAMAGED: ${problems.length} problem(s) found by integrity_check; the audit chain was not walked`,
          );
          return;
        }
        const check = ctx.services.audit.verify();
        // PostgreSQL's pages are PostgreSQL's to check (data checksums, amcheck): not claimed here.
        const onPostgres = ctx.store.kind === 'postgres';
        const r = {
          ok: check.ok,
          rows: check.rows,
          head: check.head,
          first_break: check.firstBreak,
          integrity_check: onPostgres
            ? { ok: null, problems: [] as string[], skipped: PG_PAGES }
            : { ok: true, problems: [] as string[] },
        };
        if (!check.ok) {
          kit.setExitCode(1);
          kit.io.stderr(
            `error[conflict]: the audit chain is broken at row ${check.firstBreak!.seq}: ${check.firstBreak!.reason}\n`,
          );
          kit.io.stderr(
            'hint: the database was edited outside this program; restore it from a backup and compare\n',
          );
        }
        emit(kit.io, g.json, r, () =>
          r.ok
            ? `${onPostgres ? `database pages not checked (${PG_PAGES})` : 'database intact (integrity_check ok)'}; audit chain intact: ${counted(r.rows, 'row')}, head ${r.head.seq} ${r.head.hash}`
            : `audit chain BROKEN at row ${check.firstBreak!.seq} (${counted(r.rows, 'row')} read)`,
        );
      });
    });
}
