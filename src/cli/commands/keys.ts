import type { Command } from 'commander';
import { emit } from '../io.ts';
import { keysView } from '../../views.ts';
import type { CommandKit } from '../main.ts';

/** keys show: the server's public signing key, as clients pin it to verify lease tokens. */
export function registerKeys(program: Command, kit: CommandKit): void {
  program
    .command('keys')
    .description('the server signing key')
    .command('show')
    .description('print the public key and key id clients verify lease tokens with')
    .action(async (_o: unknown, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const keys = keysView(ctx.info);
        emit(
          kit.io,
          g.json,
          keys,
          () =>
            `kid:        ${ctx.info.kid}\npublic_key: ${ctx.info.public_key}\nstatus:     active`,
        );
      });
    });
}
