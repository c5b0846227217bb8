import type { Command } from 'commander';
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { AppError } from '../../errors.ts';
import {
  checkQuerySchema,
  entitlementCreateSchema,
  entitlementUpdateSchema,
  importEnvelopeSchema,
  listQuerySchema,
  parseImportItems,
  parseWith,
  renewSchema,
  usageCsvQuerySchema,
} from '../../schemas.ts';
import {
  createdEntitlementView,
  entitlementDetailView,
  entitlementView,
  importResultView,
  leaseCheckView,
  pageView,
  usageCsv,
  usageView,
} from '../../views.ts';
import { cliActor, emit, table } from '../io.ts';
import type { CommandKit } from '../main.ts';
import { toIso } from '../../clock.ts';
import { parseIntegerOption, parseOptionalInteger } from '../../integer-option.ts';
import { withFile } from '../../file-errors.ts';
import { parseFlags } from '../../flag-errors.ts';
import { counted } from '../../plural.ts';
import { DEFAULT_GRACE_DAYS } from '../../domain/types.ts';
import { DEFAULT_PAGE_SIZE } from '../../domain/cursor.ts';

const IMPORT_FILE_LIMIT = 256 << 20;

function parseJsonOption(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new AppError('invalid_request', `${what} is not valid JSON: ${(err as Error).message}`, {
      usage: true,
    });
  }
}

/** A policy flag: the option, the policy_json field it sets, and how its text becomes the value. */
interface PolicyFlag {
  /** Commander's option text: `--max-seats <n>`. */
  option: string;
  field: string;
  help: string;
  /** The value from the flag's text (`flag` is the bare flag, for messages); none: the text itself. */
  value?: (text: string, flag: string) => unknown;
}

const integer =
  (unit?: string) =>
  (text: string, flag: string): number =>
    parseIntegerOption(text, { name: flag, ...(unit !== undefined ? { unit } : {}) });

/**
 * The flags that set policy_json fields, one per field (--policy gives the whole policy). The same
 * table declares the options and names the flag in the CLI's errors (POLICY_FLAG_OF).
 */
const POLICY_FLAGS: readonly PolicyFlag[] = [
  {
    option: '--type <type>',
    field: 'type',
    help: 'per_user, per_machine, concurrent or feature_based (or individual, seat_based, team, unlimited); required on create unless --policy gives it',
  },
  {
    option: '--max-seats <n>',
    field: 'max_seats',
    help: 'seat limit: required for per_user, per_machine and concurrent; not for feature_based',
    value: integer(),
  },
  {
    option: '--features <list>',
    field: 'features',
    help: 'comma-separated features the lease grants',
    value: (t) => (t === '' ? [] : t.split(',').map((f) => f.trim())),
  },
  {
    option: '--lease-ttl <seconds>',
    field: 'lease_ttl_seconds',
    help: "lease lifetime (default: the server's serve --lease-ttl, itself 3600 unless set)",
    value: integer('seconds'),
  },
  {
    option: '--grace-days <days>',
    field: 'grace_days',
    help: `renewals allowed this long after the end (default ${DEFAULT_GRACE_DAYS})`,
    value: integer('days'),
  },
  {
    option: '--seat-assignment <mode>',
    field: 'seat_assignment',
    help: 'auto or manual (per_user, per_machine)',
  },
  {
    option: '--quotas <list>',
    field: 'quotas',
    help: 'quota limits, e.g. dashboards=5,reports=2 (see installations)',
    value: (t) => quotasOption(t),
  },
  {
    option: '--auto-update <bool>',
    field: 'auto_update',
    help: 'true or false: the client may update installed templates by itself (reported only)',
    value: (t, flag) => booleanOption(t, flag),
  },
  {
    option: '--overdraft-seats <n>',
    field: 'overdraft_seats',
    help: 'seats granted past max_seats, each flagged as overdraft (not for feature_based)',
    value: integer(),
  },
  {
    option: '--max-borrow-hours <hours>',
    field: 'max_borrow_hours',
    help: 'longest borrow (offline use) a lease request may ask, at most 2160 (default 0: off)',
    value: integer('hours'),
  },
  {
    option: '--max-borrowed-seats <n>',
    field: 'max_borrowed_seats',
    help: 'seats that may be borrowed at once (default: no cap; not for feature_based)',
    value: integer(),
  },
  {
    option: '--max-instances-per-subject <n>',
    field: 'max_instances_per_subject',
    help: 'instances (instance_id) one subject may run on its lease (default: no cap)',
    value: integer(),
  },
];

/** `--max-seats <n>` → `--max-seats`. */
const bareFlag = (option: string): string => option.split(' ')[0]!;

/** `--max-seats` → `maxSeats`: the key commander gives the option's value under. */
const optionKey = (flag: string): string =>
  flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** policy_json.<field> → the flag that sets it, for the CLI's errors. */
const POLICY_FLAG_OF: Readonly<Record<string, string>> = Object.fromEntries([
  ...POLICY_FLAGS.map((f) => [`policy_json.${f.field}`, bareFlag(f.option)]),
  ['policy_json', '--policy'],
]);

/** The flags of create and update that set the entitlement's own fields. */
const TERM_FLAG_OF = {
  starts_at: '--starts',
  ends_at: '--ends',
  external_id: '--external-id',
} as const;

/** The list filters' flags (entitlements list). */
const LIST_FLAG_OF = {
  tenant_id: '--tenant',
  product_id: '--product',
  status: '--status',
  limit: '--limit',
  cursor: '--cursor',
} as const;

type PolicyFlags = Record<string, string | undefined>;

/** The policy from --policy JSON and/or the individual flags (flags win). */
function policyFrom(
  flags: PolicyFlags,
  base: Record<string, unknown> = {},
): Record<string, unknown> | undefined {
  const given = POLICY_FLAGS.filter((f) => flags[optionKey(bareFlag(f.option))] !== undefined);
  if (flags.policy === undefined && given.length === 0) return undefined;
  const p: Record<string, unknown> =
    flags.policy !== undefined
      ? (parseJsonOption(flags.policy, '--policy') as Record<string, unknown>)
      : { ...base };
  for (const f of given) {
    const flag = bareFlag(f.option);
    const text = flags[optionKey(flag)]!;
    p[f.field] = f.value ? f.value(text, flag) : text;
  }
  return p;
}

/** --quotas dashboards=5,reports=2 → {dashboards: 5, reports: 2} ('' for none). */
function quotasOption(text: string): Record<string, number> {
  const pairs = text === '' ? [] : text.split(',').map((p) => p.trim().split('='));
  return Object.fromEntries(
    pairs.map(([name, limit]) => {
      if (limit === undefined)
        throw new AppError('invalid_request', `--quotas: ${name} is not name=limit`, {
          usage: true,
        });
      return [name, parseIntegerOption(limit, { name: `--quotas ${name}` })];
    }),
  );
}

/** `true` or `false`, as typed. @throws AppError `invalid_request` (usage) naming the flag */
function booleanOption(text: string, flag: string): boolean {
  if (text === 'true' || text === 'false') return text === 'true';
  throw new AppError('invalid_request', `${flag} must be true or false`, {
    usage: true,
    issues: [{ path: flag, message: 'must be true or false' }],
  });
}

function policyOptions(cmd: Command): Command {
  for (const f of POLICY_FLAGS) cmd.option(f.option, f.help);
  return cmd.option(
    '--policy <json>',
    'the whole policy_json as JSON (flags above override its fields)',
  );
}

/** How many item warnings the import prints on stderr (all of them are in the --json result). */
const IMPORT_WARNINGS_SHOWN = 20;

/** An import's item warnings on stderr, for the person running it; the --json result has them all. */
function warnImported(kit: CommandKit, r: ReturnType<typeof importResultView>): void {
  const warned = r.items.filter((i) => i.warnings !== undefined);
  for (const i of warned.slice(0, IMPORT_WARNINGS_SHOWN))
    for (const w of i.warnings!)
      kit.io.stderr(`warning[${w.code}]: item ${i.index} (${i.entitlement_id}): ${w.message}\n`);
  if (warned.length > IMPORT_WARNINGS_SHOWN)
    kit.io.stderr(`warning: ${warned.length - IMPORT_WARNINGS_SHOWN} more items have warnings\n`);
}

/** entitlements create|list|show|update|suspend|resume|revoke|renew|import */
export function registerEntitlements(program: Command, kit: CommandKit): void {
  const ent = program
    .command('entitlements')
    .alias('ent')
    .description('manage entitlements (customer contracts)');
  const human = (v: ReturnType<typeof entitlementView>) =>
    [
      `${v.entitlement_id}  ${v.status}`,
      `  tenant:   ${v.tenant_id}`,
      `  product:  ${v.product_id}`,
      `  policy:   ${JSON.stringify(v.policy_json)}`,
      `  term:     ${v.starts_at} .. ${v.ends_at}`,
      `  source:   ${v.source}${v.external_id ? `  external_id: ${v.external_id}` : ''}`,
    ].join('\n');

  policyOptions(
    ent
      .command('create')
      .description('provision an entitlement by hand')
      .requiredOption('--tenant <id>', 'tenant (customer) id')
      .requiredOption('--product <id>', 'product id')
      .option('--starts <time>', 'RFC 3339 start (default now)')
      .requiredOption('--ends <time>', 'RFC 3339 end')
      .option('--external-id <id>', 'id in another system, for idempotent imports'),
  ).action(
    async (
      opts: PolicyFlags & {
        tenant: string;
        product: string;
        starts?: string;
        ends: string;
        externalId?: string;
      },
      cmd: Command,
    ) => {
      await kit.withContext(cmd, (ctx, g) => {
        const policy = policyFrom(opts) ?? {};
        if (policy.type === undefined)
          throw new AppError(
            'invalid_request',
            'invalid entitlement: --type is required (or give the type in --policy)',
            {
              usage: true,
              issues: [{ path: 'policy_json.type', message: 'type is required' }],
            },
          );
        const input = parseFlags(
          entitlementCreateSchema,
          {
            tenant_id: opts.tenant,
            product_id: opts.product,
            policy_json: policy,
            starts_at: opts.starts ?? toIso(ctx.clock.now()),
            ends_at: opts.ends,
            ...(opts.externalId !== undefined ? { external_id: opts.externalId } : {}),
          },
          'entitlement',
          { tenant_id: '--tenant', product_id: '--product', ...TERM_FLAG_OF, ...POLICY_FLAG_OF },
        );
        const v = createdEntitlementView(
          ctx.services.entitlements.create(input, cliActor()),
          ctx.clock.now(),
        );
        for (const w of v.warnings ?? []) kit.io.stderr(`warning[${w.code}]: ${w.message}\n`);
        emit(kit.io, g.json, v, () => `created ${human(v)}`);
      });
    },
  );

  ent
    .command('list')
    .description('list entitlements')
    .option('--tenant <id>', 'only this tenant')
    .option('--product <id>', 'only this product')
    .option('--status <status>', 'active, pending, grace, expired, suspended or revoked')
    .option('--limit <n>', `page size (1-500, default ${DEFAULT_PAGE_SIZE})`)
    .option('--cursor <cursor>', 'continue after this cursor (next_cursor of the previous page)')
    .action(
      async (
        opts: {
          tenant?: string;
          product?: string;
          status?: string;
          limit?: string;
          cursor?: string;
        },
        cmd: Command,
      ) => {
        await kit.withContext(cmd, (ctx, g) => {
          const q = parseFlags(
            listQuerySchema,
            {
              tenant_id: opts.tenant,
              product_id: opts.product,
              status: opts.status,
              limit: parseOptionalInteger(opts.limit, { name: '--limit' }),
              cursor: opts.cursor,
            },
            'options',
            LIST_FLAG_OF,
          );
          const r = ctx.services.entitlements.list({
            tenantId: q.tenant_id,
            productId: q.product_id,
            status: q.status,
            cursor: q.cursor,
            limit: q.limit,
          });
          const now = ctx.clock.now();
          const page = pageView(r, (e) => entitlementView(e, now));
          emit(kit.io, g.json, page, () => {
            const rows = page.data.map((v) => ({
              id: v.entitlement_id,
              tenant: v.tenant_id,
              product: v.product_id,
              type: v.policy_json.type,
              seats: v.policy_json.max_seats ?? '∞',
              status: v.status,
              ends: v.ends_at,
            }));
            return (
              table(rows, ['id', 'tenant', 'product', 'type', 'seats', 'status', 'ends']) +
              (r.nextCursor ? `\nmore: --cursor ${r.nextCursor}` : '')
            );
          });
        });
      },
    );

  ent
    .command('show <id>')
    .description('show one entitlement and its use right now')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const e = ctx.services.entitlements.get(id);
        const v = entitlementDetailView(
          e,
          ctx.clock.now(),
          ctx.services.leases.usageNow(e),
          ctx.services.quotas.states(e),
        );
        emit(
          kit.io,
          g.json,
          v,
          () =>
            `${human(v)}\n  in use:   ${counted(v.usage.active_leases, 'lease')}, ${v.usage.seats_assigned} of ${v.usage.max_seats === null ? '∞ seats' : counted(v.usage.max_seats, 'seat')} assigned`,
        );
      });
    });

  policyOptions(
    ent
      .command('update <id>')
      .description(
        'change the fields given; policy flags merge into the current policy, --policy replaces it',
      )
      .option('--starts <time>', 'new RFC 3339 start')
      .option('--ends <time>', 'new RFC 3339 end')
      .option('--external-id <id>', 'new external id'),
  ).action(
    async (
      id: string,
      opts: PolicyFlags & { starts?: string; ends?: string; externalId?: string },
      cmd: Command,
    ) => {
      await kit.withContext(cmd, (ctx, g) => {
        const current = ctx.services.entitlements.get(id);
        const policy = policyFrom(opts, current.policy as unknown as Record<string, unknown>);
        const patch = parseFlags(
          entitlementUpdateSchema,
          {
            ...(policy ? { policy_json: policy } : {}),
            ...(opts.starts !== undefined ? { starts_at: opts.starts } : {}),
            ...(opts.ends !== undefined ? { ends_at: opts.ends } : {}),
            ...(opts.externalId !== undefined ? { external_id: opts.externalId } : {}),
          },
          'update',
          { ...TERM_FLAG_OF, ...POLICY_FLAG_OF },
        );
        const v = entitlementView(
          ctx.services.entitlements.update(id, patch, cliActor()),
          ctx.clock.now(),
        );
        emit(kit.io, g.json, v, () => `updated ${human(v)}`);
      });
    },
  );

  for (const [action, text] of [
    ['suspend', 'suspend: no new leases or renewals until resumed'],
    ['resume', 'resume a suspended entitlement'],
    ['revoke', 'revoke for good (final)'],
  ] as const) {
    ent
      .command(`${action} <id>`)
      .description(text)
      .action(async (id: string, _opts: unknown, cmd: Command) => {
        await kit.withContext(cmd, (ctx, g) => {
          const v = entitlementView(
            ctx.services.entitlements[action](id, cliActor()),
            ctx.clock.now(),
          );
          emit(kit.io, g.json, v, () => `${action}: ${v.entitlement_id} is now ${v.status}`);
        });
      });
  }

  ent
    .command('renew <id>')
    .description('extend the term by whole months')
    .requiredOption('--months <n>', 'period in months (1-120)')
    .action(async (id: string, opts: { months: string }, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const { period_months } = parseFlags(
          renewSchema,
          { period_months: parseIntegerOption(opts.months, { name: '--months' }) },
          'options',
          { period_months: '--months' },
        );
        const v = entitlementView(
          ctx.services.entitlements.renew(id, period_months, cliActor()),
          ctx.clock.now(),
        );
        emit(kit.io, g.json, v, () => `renewed ${v.entitlement_id}: ends ${v.ends_at}`);
      });
    });

  ent
    .command('usage <id>')
    .description(
      '30-day usage (seats, leases, activity); --csv prints daily rows for compliance reports',
    )
    .option('--csv', 'daily usage as CSV')
    .option('--days <n>', 'days of CSV rows (1-3660, default 30)')
    .action(async (id: string, o: { csv?: boolean; days?: string }, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const e = ctx.services.entitlements.get(id);
        if (o.csv) {
          const { days } = parseFlags(
            usageCsvQuerySchema,
            o.days === undefined ? {} : { days: parseIntegerOption(o.days, { name: '--days' }) },
            'options',
            { days: '--days' },
          );
          kit.io.stdout(usageCsv(e, ctx.services.usage.daily(e, days ?? 30)));
          return;
        }
        const r = usageView(e, ctx.services.usage.report(e));
        emit(kit.io, g.json, r, () =>
          [
            `${e.id} (${e.policy.type})`,
            `  seats:    ${r.seats.assigned} assigned of ${r.seats.total ?? '∞'}, ${r.seats.active_30d} active in 30 days`,
            `  leases:   ${r.leases.active} in force, peak ${r.leases.peak_30d} in 30 days`,
            `  activity: ${counted(r.activity.grants_30d, 'grant')}, ${counted(r.activity.denials_30d, 'denial')}, ${counted(r.activity.unique_users_30d, 'unique subject')} in 30 days`,
          ].join('\n'),
        );
      });
    });

  ent
    .command('check <id>')
    .description('can a lease be had now? (for a subject with --subject)')
    .option('--subject <id>', 'answer for this subject')
    .option('--subject-type <type>', 'user or machine')
    .action(async (id: string, o: { subject?: string; subjectType?: string }, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const e = ctx.services.entitlements.get(id);
        const q = parseFlags(
          checkQuerySchema,
          { subject_type: o.subjectType, subject_id: o.subject },
          'options',
          { subject_type: '--subject-type', subject_id: '--subject' },
        );
        const subject =
          q.subject_id === undefined
            ? undefined
            : { subjectType: q.subject_type, subjectId: q.subject_id };
        const r = leaseCheckView(
          e,
          ctx.clock.now(),
          ctx.services.leases.check(e, subject),
          ctx.services.quotas.states(e),
        );
        emit(
          kit.io,
          g.json,
          r,
          () =>
            `${r.can_lease ? 'can lease' : `cannot lease: ${r.reason}`}; ${r.remaining_seats === null ? '∞ seats' : counted(r.remaining_seats, 'seat')} free (${r.status})` +
            Object.entries(r.quotas ?? {})
              .map(([name, q]) => `; ${name}: ${q.remaining} of ${q.limit} left`)
              .join(''),
        );
      });
    });

  ent
    .command('import <file>')
    .description(
      'bulk import {"entitlements": [...]} (or a JSON array): all valid or nothing; upsert by external_id',
    )
    .action(async (file: string, _opts: unknown, cmd: Command) => {
      await kit.withContext(cmd, async (ctx, g) => {
        const path = resolve(kit.io.cwd, file);
        const progress = (s: string) => {
          if (kit.io.isTTY && !g.json) kit.io.stderr(`${s}\n`);
        };
        const readAs = { action: 'read', what: 'the import file', file };
        const size = withFile(readAs, () => statSync(path).size);
        if (size > IMPORT_FILE_LIMIT)
          throw new AppError(
            'payload_too_large',
            `${file} is ${size} bytes; the import limit is ${IMPORT_FILE_LIMIT}`,
          );
        progress(`reading ${file} (${(size / 1048576).toFixed(1)} MiB)…`);
        const parsed = parseJsonOption(
          withFile(readAs, () => readFileSync(path, 'utf8')),
          file,
        );
        const envelope = parseWith(
          importEnvelopeSchema,
          Array.isArray(parsed) ? { entitlements: parsed } : parsed,
          'import file',
        );
        progress(`validating ${counted(envelope.entitlements.length, 'entitlement')}…`);
        const items = parseImportItems(envelope.entitlements);
        progress('writing (one transaction)…');
        const r = importResultView(await ctx.services.entitlements.importMany(items, cliActor()));
        warnImported(kit, r);
        emit(
          kit.io,
          g.json,
          r,
          () =>
            `imported ${counted(r.total, 'entitlement')}: ${r.created} created, ${r.updated} updated, ${r.unchanged} unchanged`,
        );
      });
    });
}
