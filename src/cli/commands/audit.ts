import type { Command } from 'commander';
import { emit } from '../io.ts';
import type { CommandKit } from '../main.ts';
import { syncServiceOf } from './sync.ts';

/** audit verify: walk the hash chain; exit 1 at the first break. */
export function registerAudit(program: Command, kit: CommandKit): void {
  const audit = program.command('audit').description('the append-only, hash-chained audit log');

  audit
    .command('verify')
    .description('walk the audit hash chain from the first row; exit 1 at the first break')
    .action(async (_o: unknown, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const r = syncServiceOf(ctx).verifyAudit();
        if (!r.ok) {
          kit.setExitCode(1);
          kit.io.stderr(`error[conflict]: the audit chain is broken at row ${r.first_break!.seq}: ${r.first_break!.reason}\n`);
          kit.io.stderr('hint: the database was edited outside this program; restore it from a backup and compare\n');
        }
        emit(kit.io, g.json, r, () => (r.ok ? `audit chain intact: ${r.rows} rows, head ${r.head.seq} ${r.head.hash}` : `audit chain BROKEN at row ${r.first_break!.seq} (${r.rows} rows read)`));
      });
    });
}
