import type { Command } from 'commander';
import { parseFlags } from '../../flag-errors.ts';
import { tokenCreateSchema } from '../../schemas.ts';
import { apiTokenView, createdApiTokenView, pageView } from '../../views.ts';
import { cliActor, emit, table } from '../io.ts';
import type { CommandKit } from '../main.ts';
import { parseIntegerOption } from '../../integer-option.ts';

/** tokens create|list|revoke */
export function registerTokens(program: Command, kit: CommandKit): void {
  const tokens = program.command('tokens').description('API tokens for the admin API');

  tokens
    .command('create')
    .description('make an API token (the secret is shown once)')
    .requiredOption('--name <name>', 'what the token is for')
    .option('--role <role>', 'admin, tenant_admin or reader', 'admin')
    .option('--tenant <id>', 'limit the token to one tenant (required for tenant_admin)')
    .option('--expires-in-days <days>', 'expire after this many days (default: never expires)')
    .action(
      async (
        opts: { name: string; role: string; tenant?: string; expiresInDays?: string },
        cmd: Command,
      ) => {
        await kit.withContext(cmd, (ctx, g) => {
          const input = parseFlags(
            tokenCreateSchema,
            {
              name: opts.name,
              role: opts.role,
              ...(opts.tenant !== undefined ? { tenant_id: opts.tenant } : {}),
              ...(opts.expiresInDays !== undefined
                ? {
                    expires_in_days: parseIntegerOption(opts.expiresInDays, {
                      name: '--expires-in-days',
                    }),
                  }
                : {}),
            },
            'options',
            {
              name: '--name',
              role: '--role',
              tenant_id: '--tenant',
              expires_in_days: '--expires-in-days',
            },
          );
          const made = ctx.services.apiTokens.create(
            {
              name: input.name,
              role: input.role,
              tenantId: input.tenant_id,
              expiresInDays: input.expires_in_days,
            },
            cliActor(),
          );
          const v = createdApiTokenView(made, ctx.clock.now());
          emit(
            kit.io,
            g.json,
            v,
            () =>
              `created ${v.token_id} (${v.role})\ntoken: ${v.token}\nThe token is shown this once.`,
          );
        });
      },
    );

  tokens
    .command('list')
    .description('list API tokens (never their secrets)')
    .action(async (_opts: unknown, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const now = ctx.clock.now();
        // Every token on one page, as GET /v1/tokens answers.
        const page = pageView({ items: ctx.services.apiTokens.list(), nextCursor: null }, (t) =>
          apiTokenView(t, now),
        );
        emit(kit.io, g.json, page, () =>
          table(
            page.data.map((t) => ({
              id: t.token_id,
              name: t.name,
              role: t.role,
              tenant: t.tenant_id,
              status: t.status,
              prefix: t.prefix,
              last_used: t.last_used_at,
            })),
            ['id', 'name', 'role', 'tenant', 'status', 'prefix', 'last_used'],
          ),
        );
      });
    });

  tokens
    .command('revoke <id>')
    .description('revoke an API token')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const v = apiTokenView(ctx.services.apiTokens.revoke(id, cliActor()), ctx.clock.now());
        emit(kit.io, g.json, v, () => `revoked ${v.token_id}`);
      });
    });
}
