/// <reference lib="dom" />
/**
 * Sync: the pinned vendor keys and the last import and export as sentences; a bundle uploaded
 * for a dry run first (its diff shown as text), applied only after; the next export downloaded.
 */
import type { SyncImportWire, SyncStatusWire } from './api.ts';
import { byId, el } from './dom.ts';
import { api, clear, report } from './session.ts';

/** The bundle checked by the last dry run: Apply sends exactly these bytes. */
let checked: ArrayBuffer | null = null;

function statusLines(s: SyncStatusWire): string[] {
  const keys = s.vendor_keys.length
    ? `Pinned vendor keys: ${s.vendor_keys.map((k) => k.kid).join(', ')}.`
    : 'No vendor key is pinned: this server takes no bundle until one is (init --vendor-key).';
  const li = s.last_import;
  const le = s.last_export;
  return [
    `This server is ${s.server_id} (signing key ${s.kid}).`,
    keys,
    li
      ? `Latest bundle imported: ${li.seq} from ${li.iss}, signed ${li.iat}, imported ${li.imported_at}, ${li.records} records; valid until ${li.exp}.`
      : 'No bundle has been imported yet.',
    le
      ? `Latest usage export: ${le.seq}, made ${le.created_at}, usage since ${le.period_start}, ${le.records} records.`
      : 'No usage export has been made yet.',
    s.allow_manual_provisioning
      ? 'Entitlements may also be made by hand here.'
      : 'Entitlements come from bundles only (manual provisioning is off).',
    `${s.permanent_revocations} entitlement(s) revoked for good by the vendor.`,
  ];
}

/** Shows the sync state (read permission; the upload and export need sync). */
export async function loadSync(): Promise<void> {
  try {
    const s = await api.syncStatus();
    byId('sync').replaceChildren(...statusLines(s).map((l) => el('p', l)));
  } catch (err) {
    report('sync-err', err);
  }
}

/** What a dry run or an import did, as lines a person reads. */
function resultText(r: SyncImportWire): string {
  const bundle = r.seq ? `bundle ${r.seq}` : 'the bundle';
  const counts = (['added', 'updated', 'revoked', 'unchanged'] as const)
    .filter((k) => typeof r[k] === 'number')
    .map((k) => `${k} ${r[k]}`)
    .join(', ');
  const lines = [
    r.dry_run
      ? `Dry run of ${bundle}: nothing changes until you apply it.`
      : `Import of ${bundle}: ${r.status}.`,
  ];
  if (counts) lines.push(`Entitlements: ${counts}.`);
  for (const [k, v] of Object.entries(r.diff ?? {}))
    if (Array.isArray(v) && v.length) lines.push(`${k}: ${v.join(', ')}`);
  return lines.join('\n');
}

async function dryRun(): Promise<void> {
  clear('sync-err');
  byId('sync-diff').textContent = '';
  byId('apply').hidden = true;
  const file = byId<HTMLInputElement>('bundle').files?.[0];
  if (!file) {
    byId('sync-err').textContent = 'choose a bundle file (.bpsync) first';
    return;
  }
  try {
    const bytes = await file.arrayBuffer();
    const r = await api.syncImport(bytes, true);
    byId('sync-diff').textContent = resultText(r);
    checked = bytes;
    byId('apply').hidden = r.status !== 'dry_run';
  } catch (err) {
    report('sync-err', err);
  }
}

async function apply(onApplied: () => void): Promise<void> {
  clear('sync-err');
  if (!checked) return;
  try {
    const r = await api.syncImport(checked, false);
    byId('sync-diff').textContent = resultText(r);
    checked = null;
    byId('apply').hidden = true;
    await loadSync();
    onApplied();
  } catch (err) {
    report('sync-err', err);
  }
}

async function download(): Promise<void> {
  clear('sync-err');
  try {
    const { blob, name } = await api.syncExport();
    const a = el('a');
    a.href = URL.createObjectURL(blob);
    a.download = name;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
    byId('export-note').textContent =
      `${name} downloaded (${blob.size} bytes): send it to the vendor.`;
    await loadSync();
  } catch (err) {
    report('sync-err', err);
  }
}

/** Wires the sync controls; `applied` runs after a bundle changed entitlements. */
export function initSync(applied: () => void): void {
  byId('dry-run').addEventListener('click', () => void dryRun());
  byId('apply').addEventListener('click', () => void apply(applied));
  byId('export').addEventListener('click', () => void download());
  byId('bundle').addEventListener('change', () => {
    checked = null;
    byId('apply').hidden = true;
    byId('sync-diff').textContent = '';
  });
}
