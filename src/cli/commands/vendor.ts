import { counted } from '../../plural.ts';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { parseIntegerOption, parseOptionalInteger } from '../../integer-option.ts';
import { systemClock } from '../../clock.ts';
import {
  DEFAULT_BUNDLE_EXP_DAYS,
  DEFAULT_VENDOR_ISS,
  vendorKeygen,
  vendorSign,
  verifyExport,
} from '../../sync/vendor.ts';
import { emit } from '../io.ts';
import type { CommandKit } from '../main.ts';

/**
 * vendor keygen|sign|verify-export: the vendor cloud's side of BPSYNC/1, so the whole loop runs on
 * one machine. These commands need no data directory.
 */
export function registerVendor(program: Command, kit: CommandKit): void {
  const vendor = program
    .command('vendor')
    .description(
      "the vendor's side of sync bundles (stands in for the cloud): keys, signing, checking exports",
    );

  vendor
    .command('keygen')
    .description(
      'make a vendor signing key: DIR/vendor.secret (k4.secret, 0600) and DIR/vendor.public (k4.public)',
    )
    .requiredOption('--out <dir>', 'folder for the two key files (never overwritten)')
    .action((opts: { out: string }, cmd: Command) => {
      const g = kit.globals(cmd);
      const r = vendorKeygen(resolve(kit.io.cwd, opts.out));
      emit(
        kit.io,
        g.json,
        {
          public_key: r.public_key,
          secret_key_file: r.secret_key_file,
          public_key_file: r.public_key_file,
          kid: r.kid,
        },
        () =>
          [
            `public_key: ${r.public_key}`,
            `kid:        ${r.kid}`,
            `secret key: ${r.secret_key_file} (keep it offline; it signs bundles)`,
            `public key: ${r.public_key_file} (pin it: init --vendor-key)`,
          ].join('\n'),
      );
    });

  vendor
    .command('sign')
    .description(
      'sign an import bundle for one server from a content file {"entitlements": [...], "revoked": [...], "settings": {...}}',
    )
    .requiredOption('--key <file>', 'the vendor secret key file (vendor.secret)')
    .requiredOption('--server-id <id>', 'the server the bundle is for (srv_…)')
    .requiredOption('--seq <n>', 'the bundle sequence number for this server (1, 2, 3, …)')
    .requiredOption(
      '--in <content.json>',
      'what the server should hold: a snapshot of its bundle entitlements',
    )
    .requiredOption('--out <file>', 'the bundle file to write (*.bpsync)')
    .option(
      '--prev <file|sha256>',
      'the previous bundle for this server (its file or manifest sha256); required when --seq > 1',
    )
    .option('--exp-days <n>', `days until the bundle expires (default ${DEFAULT_BUNDLE_EXP_DAYS})`)
    .option('--iat <time>', 'signing time, RFC 3339 (default now)')
    .option('--ack <seq>', 'the last export of this server the vendor has read')
    .option('--iss <name>', `issuer name written in the manifest (default ${DEFAULT_VENDOR_ISS})`)
    .action(
      (
        opts: {
          key: string;
          serverId: string;
          seq: string;
          in: string;
          out: string;
          prev?: string;
          expDays?: string;
          iat?: string;
          ack?: string;
          iss?: string;
        },
        cmd: Command,
      ) => {
        const g = kit.globals(cmd);
        const n = {
          seq: parseIntegerOption(opts.seq, { name: '--seq', min: 1 }),
          expDays: parseOptionalInteger(opts.expDays, {
            name: '--exp-days',
            min: 1,
            max: 3650,
            unit: 'days',
          }),
          ack: parseOptionalInteger(opts.ack, { name: '--ack' }),
        };
        const r = vendorSign({
          keyFile: resolve(kit.io.cwd, opts.key),
          serverId: opts.serverId,
          seq: n.seq,
          inFile: resolve(kit.io.cwd, opts.in),
          out: resolve(kit.io.cwd, opts.out),
          prev:
            opts.prev !== undefined && !/^[0-9a-f]{64}$/.test(opts.prev)
              ? resolve(kit.io.cwd, opts.prev)
              : opts.prev,
          expDays: n.expDays,
          iat: opts.iat,
          ack: n.ack,
          iss: opts.iss,
          now: systemClock.now(),
        });
        emit(
          kit.io,
          g.json,
          r,
          () =>
            `signed bundle seq ${r.seq} for ${opts.serverId}: ${r.file} (${counted(r.records, 'record')}, expires ${r.exp})`,
        );
      },
    );

  vendor
    .command('verify-export <file>')
    .description(
      "check a server's export: signature, payload, records, audit chain; prints a JSON summary",
    )
    .requiredOption(
      '--server-key <k4.public|file>',
      "the server's public key (k4.public…, or a file holding it)",
    )
    .option(
      '--prev <file>',
      'the previous export of the same server: also check the chain across the two',
    )
    .action(async (file: string, opts: { serverKey: string; prev?: string }, cmd: Command) => {
      kit.globals(cmd);
      const keyText =
        opts.serverKey.startsWith('k4.') || !existsSync(resolve(kit.io.cwd, opts.serverKey))
          ? opts.serverKey
          : readFileSync(resolve(kit.io.cwd, opts.serverKey), 'utf8').trim();
      const summary = await verifyExport(resolve(kit.io.cwd, file), keyText, {
        prev: opts.prev === undefined ? undefined : resolve(kit.io.cwd, opts.prev),
      });
      emit(kit.io, true, summary, () => '');
    });
}
