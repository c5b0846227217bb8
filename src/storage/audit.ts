import { createHash } from 'node:crypto';
import type { Db } from './db.ts';
import { canonicalJson } from '../tokens/strict-json.ts';

export interface AuditEntry {
  at: number;
  actor: string;
  action: string;
  targetType?: string | null;
  targetId?: string | null;
  details?: Record<string, unknown>;
}

export interface AuditRow {
  seq: number;
  at: number;
  actor: string;
  action: string;
  target_type: string | null;
  target_id: string | null;
  details: string;
  prev_hash: string;
  hash: string;
}

export const GENESIS_HASH = '0'.repeat(64);

/** hash = sha256(prev_hash ‖ "\n" ‖ canonical row). The row includes its seq, so rows cannot be reordered. */
export function auditHash(prevHash: string, row: Omit<AuditRow, 'prev_hash' | 'hash'>): string {
  const canonical = canonicalJson({
    seq: row.seq,
    at: row.at,
    actor: row.actor,
    action: row.action,
    target_type: row.target_type,
    target_id: row.target_id,
    details: row.details,
  });
  return createHash('sha256').update(prevHash).update('\n').update(canonical).digest('hex');
}

export interface ChainBreak {
  seq: number;
  reason: string;
}

/** All SQL about the audit log. Appends must run inside the caller's IMMEDIATE transaction. */
export function createAuditRepo(db: Db) {
  const head = db.prepare<[], { seq: number; hash: string }>(
    'SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1',
  );
  const insert =
    db.prepare(`INSERT INTO audit_log (seq, at, actor, action, target_type, target_id, details, prev_hash, hash)
    VALUES (@seq, @at, @actor, @action, @target_type, @target_id, @details, @prev_hash, @hash)`);
  const page = db.prepare<[number, number], AuditRow>(
    'SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?',
  );

  return {
    head(): { seq: number; hash: string } {
      return head.get() ?? { seq: 0, hash: GENESIS_HASH };
    },
    /** Appends entries to the chain; call inside a transaction so the head cannot move under us. */
    append(entries: AuditEntry | AuditEntry[]): void {
      let { seq, hash } = this.head();
      for (const e of Array.isArray(entries) ? entries : [entries]) {
        const row = {
          seq: seq + 1,
          at: e.at,
          actor: e.actor,
          action: e.action,
          target_type: e.targetType ?? null,
          target_id: e.targetId ?? null,
          details: canonicalJson(e.details ?? {}),
        };
        const h = auditHash(hash, row);
        insert.run({ ...row, prev_hash: hash, hash: h });
        seq = row.seq;
        hash = h;
      }
    },
    page(afterSeq: number, limit: number): AuditRow[] {
      return page.all(afterSeq, limit);
    },
    /** Walks the whole chain; returns the first break, or null when intact. */
    verify(): { rows: number; head: string; firstBreak: ChainBreak | null } {
      let prev = GENESIS_HASH;
      let expectSeq = 1;
      let rows = 0;
      for (const r of db
        .prepare('SELECT * FROM audit_log ORDER BY seq')
        .iterate() as IterableIterator<AuditRow>) {
        rows++;
        if (r.seq !== expectSeq)
          return {
            rows,
            head: prev,
            firstBreak: { seq: expectSeq, reason: `row ${expectSeq} is missing` },
          };
        if (r.prev_hash !== prev)
          return {
            rows,
            head: prev,
            firstBreak: { seq: r.seq, reason: 'prev_hash does not match the previous row' },
          };
        if (auditHash(prev, r) !== r.hash)
          return {
            rows,
            head: prev,
            firstBreak: { seq: r.seq, reason: 'row content does not match its hash' },
          };
        prev = r.hash;
        expectSeq++;
      }
      return { rows, head: prev, firstBreak: null };
    },
  };
}

export type AuditRepo = ReturnType<typeof createAuditRepo>;
