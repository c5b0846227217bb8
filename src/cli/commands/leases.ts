import type { Command } from 'commander';
import { parseFlags } from '../../flag-errors.ts';
import { DEFAULT_PAGE_SIZE } from '../../domain/cursor.ts';
import { leaseListQuerySchema } from '../../schemas.ts';
import { leaseView, pageView } from '../../views.ts';
import { cliActor, emit, table } from '../io.ts';
import type { CommandKit } from '../main.ts';
import { parseOptionalInteger } from '../../integer-option.ts';

/** leases list|revoke */
export function registerLeases(program: Command, kit: CommandKit): void {
  const leases = program.command('leases').description('active leases');

  leases
    .command('list')
    .description('list leases in force')
    .option('--entitlement <id>', 'only this entitlement')
    .option('--tenant <id>', 'only this tenant')
    .option('--product <id>', 'only this product')
    .option('--subject-type <type>', 'user or machine')
    .option('--subject <id>', 'only this subject')
    .option('--limit <n>', `page size (1-500, default ${DEFAULT_PAGE_SIZE})`)
    .option('--cursor <cursor>', 'continue after this cursor')
    .action(
      async (
        o: {
          entitlement?: string;
          tenant?: string;
          product?: string;
          subjectType?: string;
          subject?: string;
          limit?: string;
          cursor?: string;
        },
        cmd: Command,
      ) => {
        await kit.withContext(cmd, (ctx, g) => {
          const q = parseFlags(
            leaseListQuerySchema,
            {
              entitlement_id: o.entitlement,
              tenant_id: o.tenant,
              product_id: o.product,
              subject_type: o.subjectType,
              subject_id: o.subject,
              limit: parseOptionalInteger(o.limit, { name: '--limit' }),
              cursor: o.cursor,
            },
            'options',
            {
              entitlement_id: '--entitlement',
              tenant_id: '--tenant',
              product_id: '--product',
              subject_type: '--subject-type',
              subject_id: '--subject',
              limit: '--limit',
              cursor: '--cursor',
            },
          );
          const r = ctx.services.leases.list({
            entitlementId: q.entitlement_id,
            tenantId: q.tenant_id,
            productId: q.product_id,
            subjectType: q.subject_type,
            subjectId: q.subject_id,
            cursor: q.cursor,
            limit: q.limit,
          });
          const page = pageView(r, leaseView);
          emit(
            kit.io,
            g.json,
            page,
            () =>
              table(
                page.data.map((l) => ({
                  id: l.lease_id,
                  entitlement: l.entitlement_id,
                  subject: `${l.subject_type}:${l.subject_id}`,
                  expires: l.expires_at,
                })),
                ['id', 'entitlement', 'subject', 'expires'],
              ) + (r.nextCursor ? `\nmore: --cursor ${r.nextCursor}` : ''),
          );
        });
      },
    );

  leases
    .command('revoke <id>')
    .description('end a lease now (its next renewal is refused)')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const v = leaseView(ctx.services.leases.revoke(id, cliActor()));
        emit(
          kit.io,
          g.json,
          v,
          () => `revoked ${v.lease_id} (${v.subject_type}:${v.subject_id} on ${v.entitlement_id})`,
        );
      });
    });
}
