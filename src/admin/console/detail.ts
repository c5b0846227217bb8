/// <reference lib="dom" />
/**
 * One entitlement: its status, policy, term and usage (a chart of the last 30 days), its named
 * seats (on per_user and per_machine policies only: the others have none), its quotas and their
 * installations (when the policy has quotas), its leases in force, and the lifecycle actions the
 * role may use. Suspend, revoke and removing an installation ask first; revoke is final.
 */
import type { EntitlementWire } from './api.ts';
import { lastDays, usageChart } from './chart.ts';
import { badge, button, byId, confirmed, el, table } from './dom.ts';
import { openForm } from './entitlements.ts';
import { api, can, clear, report, whoami } from './session.ts';

/** The entitlement shown. */
let current: EntitlementWire | null = null;
let onChanged: () => void = () => {};

/** The subject type a named-seat policy leases to; null when the policy has no named seats. */
function seatSubjectType(type: string): string | null {
  return type === 'per_user' ? 'user' : type === 'per_machine' ? 'machine' : null;
}

/** Shows entitlement `id`, scrolled into view with the focus on it. */
export async function openEntitlement(id: string, scroll = true): Promise<void> {
  clear('detail-err');
  const section = byId('detail');
  section.hidden = false;
  if (scroll) {
    section.scrollIntoView({ block: 'start' });
    section.focus({ preventScroll: true });
  }
  try {
    const [e, usage, days, leases] = await Promise.all([
      api.entitlement(id),
      api.usage(id),
      api.usageDays(id),
      api.leases(id),
    ]);
    current = e;
    byId('detail-title').textContent = `${e.entitlement_id} · ${e.tenant_id} · ${e.product_id}`;
    const kv = byId('detail-kv');
    kv.replaceChildren();
    const add = (k: string, v: string | Node): void => {
      const d = el('div');
      if (v instanceof Node) d.append(v);
      else d.textContent = v;
      kv.append(el('div', k, 'muted'), d);
    };
    add('status', badge(e.status));
    add('policy', policyText(e.policy_json));
    add('term', `${e.starts_at} → ${e.ends_at}`);
    add('source', e.source === 'bundle' ? 'vendor bundle (changed by bundles only)' : e.source);
    const { seats, leases: inForce, activity } = usage;
    if (seatSubjectType(e.policy_json.type))
      add(
        'seats',
        `${seats.assigned} assigned of ${seats.total ?? '∞'}, ${seats.active_30d} active in 30 days`,
      );
    const borrowed = inForce.borrowed === undefined ? '' : `, ${inForce.borrowed} borrowed`;
    add('leases', `${inForce.active} in force now${borrowed}, peak ${inForce.peak_30d} in 30 days`);
    for (const [name, q] of Object.entries(e.quotas ?? {}))
      add(`quota ${name}`, `${q.used} used of ${q.limit}, ${q.remaining} left`);
    const overdraft = activity.overdraft_grants_30d;
    add(
      'activity',
      `${activity.grants_30d} grants${overdraft === undefined ? '' : ` (${overdraft} overdraft)`}, ` +
        `${activity.denials_30d} denials, ${activity.unique_users_30d} distinct subjects in 30 days`,
    );
    byId('chart').replaceChildren(
      usageChart(lastDays(days, whoami()?.server_time ?? new Date().toISOString())),
    );
    showActions(e);
    byId('leases').replaceChildren(
      table(
        leases.data,
        [
          ['lease', (l) => l.lease_id],
          ['subject', (l) => `${l.subject_type}:${l.subject_id}`],
          ['expires', (l) => l.expires_at],
          [
            '',
            (l) => [l.borrowed && 'borrowed', l.overdraft && 'overdraft'].filter(Boolean).join(' '),
          ],
          ...(can('seats')
            ? [
                [
                  '',
                  (l: (typeof leases.data)[number]) =>
                    button('revoke', () => {
                      if (confirmed(`End lease ${l.lease_id} of ${l.subject_id} now?`))
                        void act(() => api.revokeLease(l.lease_id));
                    }),
                ] as [string, (l: (typeof leases.data)[number]) => unknown],
              ]
            : []),
        ],
        undefined,
        'no lease in force',
      ),
    );
    await showSeats(e);
    await showInstallations(e);
  } catch (err) {
    report('detail-err', err);
  }
}

/** The policy as a person reads it: type, seats, features, then anything else it sets. */
function policyText(p: EntitlementWire['policy_json']): string {
  const { type, max_seats, features, quotas, ...rest } = p;
  const seats = max_seats === 1 ? '1 seat' : max_seats ? `${max_seats} seats` : 'no seat limit';
  const parts = [type, seats];
  if (Array.isArray(features) && features.length) parts.push(`features: ${features.join(', ')}`);
  if (quotas && typeof quotas === 'object')
    parts.push(
      `quotas: ${Object.entries(quotas)
        .map(([name, limit]) => `${name} ${String(limit)}`)
        .join(', ')}`,
    );
  for (const [k, v] of Object.entries(rest)) parts.push(`${k}: ${String(v)}`);
  return parts.join(' · ');
}

/** Shows the lifecycle buttons that apply to this entitlement's status. */
function showActions(e: EntitlementWire): void {
  const managed = e.source === 'bundle';
  const final = e.status === 'revoked';
  const show = (id: string, on: boolean) => {
    byId(id).hidden = !on;
  };
  show('edit', !managed && !final);
  show('suspend', !managed && !final && e.status !== 'suspended');
  show('resume', !managed && e.status === 'suspended');
  show('renew', !managed && !final);
  show('months', !managed && !final);
  show('revoke', !managed && !final);
}

async function showSeats(e: EntitlementWire): Promise<void> {
  const type = seatSubjectType(e.policy_json.type);
  byId('seats-box').hidden = type === null;
  if (type === null) return;
  byId('subject').setAttribute('placeholder', `${type} id`);
  const seats = await api.seats(e.entitlement_id);
  type Seat = (typeof seats.data)[number];
  byId('seats').replaceChildren(
    table<Seat>(
      seats.data,
      [
        ['subject', (s) => `${s.subject_type}:${s.subject_id}`],
        ['assigned', (s) => s.assigned_at],
        ['by', (s) => s.assigned_by],
        ...(can('seats')
          ? [
              [
                '',
                (s: Seat) =>
                  button('revoke', () => {
                    if (confirmed(`Revoke ${s.subject_id}'s seat (its lease ends too)?`))
                      void act(() => api.revokeSeat(e.entitlement_id, s.seat_id));
                  }),
              ] as [string, (s: Seat) => unknown],
            ]
          : []),
      ],
      undefined,
      'no seat assigned',
    ),
  );
}

/** The installations of the entitlement's quotas; the box is hidden when its policy has none. */
async function showInstallations(e: EntitlementWire): Promise<void> {
  byId('quotas-box').hidden = e.quotas === undefined;
  if (e.quotas === undefined) return;
  const list = await api.installations(e.entitlement_id);
  type Installation = (typeof list.data)[number];
  byId('installations').replaceChildren(
    table<Installation>(
      list.data,
      [
        ['quota', (i) => i.quota],
        ['name', (i) => i.name],
        ['version', (i) => i.version ?? '-'],
        ['by', (i) => i.principal_id ?? '-'],
        ['installed', (i) => i.created_at],
        ...(can('seats')
          ? [
              [
                '',
                (i: Installation) =>
                  button('remove', () => {
                    if (confirmed(`Remove ${i.quota} "${i.name}"? Its unit is free again.`))
                      void act(() => api.removeInstallation(e.entitlement_id, i.installation_id));
                  }),
              ] as [string, (i: Installation) => unknown],
            ]
          : []),
      ],
      undefined,
      'nothing installed',
    ),
  );
}

/** Runs a change, then shows this entitlement and the list again; a refusal is shown once. */
async function act(change: () => Promise<unknown>): Promise<void> {
  clear('detail-err');
  try {
    await change();
  } catch (err) {
    report('detail-err', err);
    return;
  }
  if (current) await openEntitlement(current.entitlement_id, false);
  onChanged();
}

/** Wires the detail's controls; `changed` runs after each change (the list refreshes). */
export function initDetail(changed: () => void): void {
  onChanged = changed;
  const withCurrent = (f: (e: EntitlementWire) => void) => () => {
    if (current) f(current);
  };
  byId('edit').addEventListener(
    'click',
    withCurrent((e) => openForm(e)),
  );
  byId('suspend').addEventListener(
    'click',
    withCurrent((e) => {
      if (confirmed(`Suspend ${e.entitlement_id}? No new leases or renewals until resumed.`))
        void act(() => api.lifecycle(e.entitlement_id, 'suspend'));
    }),
  );
  byId('resume').addEventListener(
    'click',
    withCurrent((e) => void act(() => api.lifecycle(e.entitlement_id, 'resume'))),
  );
  byId('revoke').addEventListener(
    'click',
    withCurrent((e) => {
      if (confirmed(`Revoke ${e.entitlement_id} for good? This cannot be undone.`))
        void act(() => api.lifecycle(e.entitlement_id, 'revoke'));
    }),
  );
  byId('renew').addEventListener(
    'click',
    withCurrent((e) => {
      const months = Number(byId<HTMLSelectElement>('months').value);
      void act(() => api.renew(e.entitlement_id, months));
    }),
  );
  byId('assign').addEventListener(
    'click',
    withCurrent((e) => {
      const type = seatSubjectType(e.policy_json.type);
      const subject = byId<HTMLInputElement>('subject').value.trim();
      if (type && subject)
        void act(async () => {
          await api.assignSeat(e.entitlement_id, type, subject);
          byId<HTMLInputElement>('subject').value = '';
        });
    }),
  );
  byId('assign-bulk').addEventListener(
    'click',
    withCurrent((e) => {
      const type = seatSubjectType(e.policy_json.type);
      const ids = byId<HTMLTextAreaElement>('bulk')
        .value.split(/[\s,]+/)
        .filter((s) => s !== '');
      if (type && ids.length)
        void act(async () => {
          await api.assignSeats(e.entitlement_id, type, ids);
          byId<HTMLTextAreaElement>('bulk').value = '';
        });
    }),
  );
}
