import type { Command } from 'commander';
import { parseFlags } from '../../flag-errors.ts';
import { SEAT_PAGE_SIZE } from '../../domain/seats.ts';
import {
  parseWith,
  seatListQuerySchema,
  subjectIdentifier,
  subjectTypeSchema,
} from '../../schemas.ts';
import { pageView, seatRevokedView, seatsAssignedView, seatView } from '../../views.ts';
import { cliActor, emit, table } from '../io.ts';
import type { CommandKit } from '../main.ts';
import { parseOptionalInteger } from '../../integer-option.ts';

/** seats list|assign|revoke */
export function registerSeats(program: Command, kit: CommandKit): void {
  const seats = program
    .command('seats')
    .description('named seats of per_user and per_machine entitlements');

  seats
    .command('list <entitlement>')
    .description('list the seats of an entitlement')
    .option('--limit <n>', `page size (1-500, default ${SEAT_PAGE_SIZE})`)
    .option('--cursor <cursor>', 'continue after this cursor')
    .action(async (entitlement: string, o: { limit?: string; cursor?: string }, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const q = parseFlags(
          seatListQuerySchema,
          { limit: parseOptionalInteger(o.limit, { name: '--limit' }), cursor: o.cursor },
          'options',
          { limit: '--limit', cursor: '--cursor' },
        );
        const r = ctx.services.seats.list(entitlement, q.cursor, q.limit);
        const page = pageView(r, seatView);
        emit(
          kit.io,
          g.json,
          page,
          () =>
            table(
              page.data.map((s) => ({
                seat: s.seat_id,
                subject: `${s.subject_type}:${s.subject_id}`,
                assigned: s.assigned_at,
                by: s.assigned_by,
              })),
              ['seat', 'subject', 'assigned', 'by'],
            ) + (r.nextCursor ? `\nmore: --cursor ${r.nextCursor}` : ''),
        );
      });
    });

  seats
    .command('assign <entitlement> <subjects...>')
    .description('assign seats to one or more subjects, all or nothing')
    .option('--subject-type <type>', 'user or machine (default: what the entitlement takes)')
    .action(
      async (
        entitlement: string,
        subjects: string[],
        o: { subjectType?: string },
        cmd: Command,
      ) => {
        await kit.withContext(cmd, (ctx, g) => {
          const type =
            o.subjectType === undefined
              ? ctx.services.seats.subjectTypeOf(entitlement)
              : parseWith(subjectTypeSchema, o.subjectType, '--subject-type');
          const list = subjects.map((s) => ({
            subjectType: type,
            subjectId: parseWith(subjectIdentifier, s, 'subject'),
          }));
          const v = seatsAssignedView(ctx.services.seats.assign(entitlement, list, cliActor()));
          emit(kit.io, g.json, v, () =>
            v.data
              .map((s) => `assigned ${s.seat_id} to ${s.subject_type}:${s.subject_id}`)
              .join('\n'),
          );
        });
      },
    );

  seats
    .command('revoke <entitlement> <seat>')
    .description("revoke a seat; the holder's running lease ends now")
    .action(async (entitlement: string, seat: string, _o: unknown, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const r = ctx.services.seats.revoke(entitlement, seat, cliActor());
        const v = seatRevokedView(r);
        emit(
          kit.io,
          g.json,
          v,
          () =>
            `revoked ${v.seat_id} (${v.subject_type}:${v.subject_id})${r.endedLease ? `; ended lease ${r.endedLease}` : ''}`,
        );
      });
    });
}
