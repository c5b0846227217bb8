import type { Db } from './db.ts';
import { canonicalJson } from '../tokens/strict-json.ts';
import {
  auditHash,
  GENESIS_HASH,
  type AuditEntry,
  type AuditHead,
  type AuditLog,
  type AuditRow,
} from '../domain/audit.ts';

/** All SQL about the audit log: the AuditLog seam on SQLite. Appends must run inside the caller's IMMEDIATE transaction. */
export function createAuditRepo(db: Db): AuditLog {
  const head = db.prepare<[], AuditHead>(
    'SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1',
  );
  const insert =
    db.prepare(`INSERT INTO audit_log (seq, at, actor, action, target_type, target_id, details, prev_hash, hash)
    VALUES (@seq, @at, @actor, @action, @target_type, @target_id, @details, @prev_hash, @hash)`);
  const page = db.prepare<[number, number], AuditRow>(
    'SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?',
  );
  const range = db.prepare<[number, number], AuditRow>(
    'SELECT * FROM audit_log WHERE seq > ? AND seq <= ? ORDER BY seq',
  );
  const row = db.prepare<[number], AuditRow>('SELECT * FROM audit_log WHERE seq = ?');
  // The ledger of exports is sync's table; the head each export carried anchors the chain.
  const exported = db.prepare<[], { exportSeq: number; seq: number; hash: string }>(
    'SELECT seq AS "exportSeq", audit_seq AS seq, audit_hash AS hash FROM sync_exports ORDER BY seq DESC LIMIT 1',
  );

  const repo: AuditLog = {
    head() {
      return head.get() ?? { seq: 0, hash: GENESIS_HASH };
    },
    append(entries: AuditEntry | AuditEntry[]): void {
      let { seq, hash } = repo.head();
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
    page(afterSeq, limit) {
      return page.all(afterSeq, limit);
    },
    range(afterSeq, toSeq) {
      return range.iterate(afterSeq, toSeq);
    },
    row(seq) {
      return row.get(seq);
    },
    exportedHead() {
      return exported.get();
    },
  };
  return repo;
}

export type AuditRepo = AuditLog;
