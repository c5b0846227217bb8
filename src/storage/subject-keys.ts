/**
 * The JS step of migration 0007 (subject keys): after its SQL has computed the keys and moved the
 * seats that became duplicates to seats_merged, this reports every collision, in the audit chain
 * (so the vendor's next export carries it) and as a note for the operator.
 */
import type { Db } from './db.ts';
import type { MigrationNote } from './migrations.ts';
import { createAuditRepo } from './audit.ts';
import type { SeatRow } from './leases.ts';
import { toIso } from '../clock.ts';

/** The audit row lists this many collisions of each kind, the operator's note fewer; counts are always whole. */
const AUDIT_GROUPS = 1000;
const NOTE_GROUPS = 20;

/** A seat moved to seats_merged: the seat row, and the seat it collided with. */
interface MergedRow extends SeatRow {
  merged_into: string;
  kept_subject_id: string;
  kept_assigned_at: number;
}

interface LeaseRow {
  entitlement_id: string;
  subject_type: string;
  subject_key: string;
  subject_id: string;
  granted_at: number;
  expires_at: number;
}

export interface SeatMergeGroup {
  entitlement_id: string;
  subject_type: string;
  kept: { seat_id: string; subject_id: string; assigned_at: string };
  merged: Array<{ seat_id: string; subject_id: string; assigned_at: string; assigned_by: string }>;
}

export interface LeaseCollisionGroup {
  entitlement_id: string;
  subject_type: string;
  /** The running leases of one subject, oldest first. Lease ids are credentials: never listed. */
  leases: Array<{ subject_id: string; granted_at: string; expires_at: string }>;
}

/**
 * Reports what migration 0007 merged: seats moved to seats_merged (grouped by the seat that stays)
 * and subjects that hold several running leases on one entitlement. Writes one audit row
 * (`subjects.merged`, actor `system`) and returns one note; writes and returns nothing when
 * nothing collided.
 */
export function reportSubjectMerges(db: Db, env: { now: () => number }): MigrationNote[] {
  const now = env.now();
  const merged = db
    .prepare<[], MergedRow>(
      `SELECT m.*, s.subject_id AS kept_subject_id, s.assigned_at AS kept_assigned_at
         FROM seats_merged m JOIN seats s ON s.id = m.merged_into
        ORDER BY m.entitlement_id, m.subject_type, m.subject_key, m.assigned_at, m.id`,
    )
    .all();
  const leaseRows = db
    .prepare<[number], LeaseRow>(
      `WITH live AS (SELECT * FROM leases WHERE state = 'active' AND expires_at > ?)
       SELECT l.entitlement_id, l.subject_type, l.subject_key, l.subject_id, l.granted_at, l.expires_at
         FROM live l JOIN (SELECT entitlement_id, subject_type, subject_key FROM live GROUP BY 1, 2, 3 HAVING count(*) > 1) d
           USING (entitlement_id, subject_type, subject_key)
        ORDER BY l.entitlement_id, l.subject_type, l.subject_key, l.granted_at, l.seq`,
    )
    .all(now);
  if (merged.length === 0 && leaseRows.length === 0) return [];

  const seatGroups: SeatMergeGroup[] = [];
  for (const r of merged) {
    let g = seatGroups.at(-1);
    if (!g || g.kept.seat_id !== r.merged_into) {
      g = {
        entitlement_id: r.entitlement_id,
        subject_type: r.subject_type,
        kept: {
          seat_id: r.merged_into,
          subject_id: r.kept_subject_id,
          assigned_at: toIso(r.kept_assigned_at),
        },
        merged: [],
      };
      seatGroups.push(g);
    }
    g.merged.push({
      seat_id: r.id,
      subject_id: r.subject_id,
      assigned_at: toIso(r.assigned_at),
      assigned_by: r.assigned_by,
    });
  }
  const leaseGroups: LeaseCollisionGroup[] = [];
  let lastKey = '';
  for (const r of leaseRows) {
    const key = `${r.entitlement_id}\n${r.subject_type}\n${r.subject_key}`;
    if (key !== lastKey)
      leaseGroups.push({
        entitlement_id: r.entitlement_id,
        subject_type: r.subject_type,
        leases: [],
      });
    lastKey = key;
    leaseGroups.at(-1)!.leases.push({
      subject_id: r.subject_id,
      granted_at: toIso(r.granted_at),
      expires_at: toIso(r.expires_at),
    });
  }

  const counts = {
    seats_merged: merged.length,
    subjects_with_merged_seats: seatGroups.length,
    subjects_with_several_leases: leaseGroups.length,
  };
  const audit = createAuditRepo(db);
  audit.append({
    at: now,
    actor: 'system',
    action: 'subjects.merged',
    targetType: 'server',
    targetId: null,
    details: {
      migration: '0007_subject_keys',
      ...counts,
      seat_groups: seatGroups.slice(0, AUDIT_GROUPS),
      lease_groups: leaseGroups.slice(0, AUDIT_GROUPS),
      truncated: seatGroups.length > AUDIT_GROUPS || leaseGroups.length > AUDIT_GROUPS,
    },
  });
  const auditSeq = audit.head().seq;

  const parts: string[] = [];
  if (merged.length > 0) {
    parts.push(
      `${merged.length} seat${merged.length === 1 ? '' : 's'} of ${seatGroups.length} subject${seatGroups.length === 1 ? '' : 's'} merged into the oldest seat of the subject (moved to table seats_merged, nothing deleted)`,
    );
  }
  if (leaseGroups.length > 0) {
    parts.push(
      `${leaseGroups.length} subject${leaseGroups.length === 1 ? ' holds' : 's hold'} several running leases on one entitlement (left to run; later grants share one)`,
    );
  }
  const describe = (g: SeatMergeGroup) =>
    `${g.entitlement_id} ${g.subject_type}:${g.kept.subject_id} kept ${g.kept.seat_id}, merged ${g.merged.map((m) => `${m.seat_id} (${m.subject_id})`).join(', ')}`;
  return [
    {
      migration: '0007_subject_keys',
      message: `subject ids that differ only in case or Unicode form are now one subject: ${parts.join('; ')}; audit row ${auditSeq} lists them`,
      details: {
        ...counts,
        audit_seq: auditSeq,
        seats: seatGroups.slice(0, NOTE_GROUPS).map(describe),
        leases: leaseGroups
          .slice(0, NOTE_GROUPS)
          .map(
            (g) =>
              `${g.entitlement_id} ${g.subject_type}: ${g.leases.map((l) => l.subject_id).join(', ')}`,
          ),
      },
    },
  ];
}
