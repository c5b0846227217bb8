import type { Command } from 'commander';
import { inFlagTerms, parseFlags, type FlagNames } from '../../flag-errors.ts';
import { AppError } from '../../errors.ts';
import { INSTALLATION_PAGE_SIZE } from '../../domain/quotas.ts';
import { installationListQuerySchema } from '../../schemas.ts';
import { installationView, pageView } from '../../views.ts';
import { cliActor, emit, table } from '../io.ts';
import type { CommandKit } from '../main.ts';
import { parseOptionalInteger } from '../../integer-option.ts';

/** --metadata: a JSON object (the quota service checks its size). */
function metadataOption(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new AppError(
      'invalid_request',
      `--metadata is not valid JSON: ${(err as Error).message}`,
      { usage: true },
    );
  }
  // An array or a scalar reaches the service's check, which names `metadata`.
  return value as Record<string, unknown>;
}

/**
 * The install fields → what sets them on this command line (the quota rules name API fields). The
 * QUOTA argument is named `quota` in the usage already.
 */
const INSTALL_FLAGS: FlagNames = {
  name: 'NAME',
  metadata: '--metadata',
  version: '--installed-version',
  principal_id: '--principal',
  idempotency_key: '--idempotency-key',
};
/** set-version's one field: its VERSION argument. */
const VERSION_FLAGS: FlagNames = { version: 'VERSION' };

/** `run()`, with a refused field named as this command line sets it (inFlagTerms). */
function inFlags<T>(what: string, flags: FlagNames, run: () => T): T {
  try {
    return run();
  } catch (err) {
    throw inFlagTerms(err, what, flags);
  }
}

/** One installation on one line, for people. */
function describe(v: ReturnType<typeof installationView>): string {
  return `${v.installation_id} ${v.quota} "${v.name}"${v.version ? ` v${v.version}` : ''} on ${v.entitlement_id}`;
}

/** installations list|show|add|set-version|remove: the units of entitlements' quotas. */
export function registerInstallations(program: Command, kit: CommandKit): void {
  const inst = program
    .command('installations')
    .description('installations: the units of quotas (policy_json.quotas, e.g. dashboards)');

  inst
    .command('list')
    .description('list installations, oldest first')
    .option('--entitlement <id>', 'of this entitlement')
    .option('--tenant <id>', "of this tenant's entitlements")
    .option('--quota <name>', 'of this quota')
    .option('--limit <n>', `page size (1-500, default ${INSTALLATION_PAGE_SIZE})`)
    .option('--cursor <cursor>', 'continue after this cursor')
    .action(
      async (
        o: {
          entitlement?: string;
          tenant?: string;
          quota?: string;
          limit?: string;
          cursor?: string;
        },
        cmd: Command,
      ) => {
        await kit.withContext(cmd, (ctx, g) => {
          const q = parseFlags(
            installationListQuerySchema,
            {
              entitlement_id: o.entitlement,
              tenant_id: o.tenant,
              quota: o.quota,
              limit: parseOptionalInteger(o.limit, { name: '--limit' }),
              cursor: o.cursor,
            },
            'options',
            {
              entitlement_id: '--entitlement',
              tenant_id: '--tenant',
              quota: '--quota',
              limit: '--limit',
              cursor: '--cursor',
            },
          );
          const r = ctx.services.quotas.list(
            { entitlementId: q.entitlement_id, tenant: q.tenant_id, quota: q.quota },
            q.cursor,
            q.limit,
          );
          const page = pageView(r, installationView);
          emit(
            kit.io,
            g.json,
            page,
            () =>
              table(
                page.data.map((i) => ({
                  installation: i.installation_id,
                  entitlement: i.entitlement_id,
                  quota: i.quota,
                  name: i.name,
                  version: i.version,
                  created: i.created_at,
                })),
                ['installation', 'entitlement', 'quota', 'name', 'version', 'created'],
              ) + (r.nextCursor ? `\nmore: --cursor ${r.nextCursor}` : ''),
          );
        });
      },
    );

  inst
    .command('show <installation>')
    .description('show one installation')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const v = installationView(ctx.services.quotas.get(id));
        emit(kit.io, g.json, v, () => describe(v));
      });
    });

  inst
    .command('add <entitlement> <quota> <name>')
    .description('install: use one unit of a quota (refused when none is left)')
    .option('--metadata <json>', 'a JSON object kept with it (at most 16 KiB)')
    // Not --version: the program's own option takes that anywhere on the line.
    .option('--installed-version <version>', 'the version installed')
    .option('--principal <id>', 'who installed it')
    .option(
      '--idempotency-key <key>',
      'a retry with the same key answers the first installation instead of using another unit',
    )
    .action(
      async (
        entitlement: string,
        quota: string,
        name: string,
        o: {
          metadata?: string;
          installedVersion?: string;
          principal?: string;
          idempotencyKey?: string;
        },
        cmd: Command,
      ) => {
        await kit.withContext(cmd, (ctx, g) => {
          const r = inFlags('installation', INSTALL_FLAGS, () =>
            ctx.services.quotas.install(
              entitlement,
              {
                quota,
                name,
                metadata: metadataOption(o.metadata),
                version: o.installedVersion,
                principalId: o.principal,
                idempotencyKey: o.idempotencyKey,
              },
              cliActor(),
            ),
          );
          const v = installationView(r.installation);
          emit(kit.io, g.json, v, () =>
            r.created ? `installed ${describe(v)}` : `already installed: ${describe(v)}`,
          );
        });
      },
    );

  inst
    .command('set-version <installation> <version>')
    .description('record the version an installation runs (only while its entitlement is active)')
    .action(async (id: string, version: string, _o: unknown, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const v = installationView(
          inFlags('version', VERSION_FLAGS, () =>
            ctx.services.quotas.setVersion(id, version, cliActor()),
          ),
        );
        emit(kit.io, g.json, v, () => `updated ${describe(v)}`);
      });
    });

  inst
    .command('remove <entitlement> <installation>')
    .description('remove an installation: its unit is free again')
    .action(async (entitlement: string, id: string, _o: unknown, cmd: Command) => {
      await kit.withContext(cmd, (ctx, g) => {
        const v = installationView(ctx.services.quotas.remove(entitlement, id, cliActor()));
        emit(kit.io, g.json, v, () => `removed ${describe(v)}`);
      });
    });
}
