/**
 * The audit log: an append-only chain of rows, each hashed with the one before it, so an edited,
 * removed or reordered row shows. This module holds the chain's rules (the hash, the walk that
 * verifies it) and the one audit service every face reads the log through: GET /v1/audit,
 * `audit verify`, backups and sync exports. Rows are appended by each domain service inside its
 * own transaction (AuditLog.append), never here.
 */
import { pageOf } from './cursor.ts';
import { createHash } from 'node:crypto';
import { canonicalJson } from '../tokens/strict-json.ts';

/** What a domain service records: `at` in epoch ms, `details` any JSON object (stored canonical). */
export interface AuditEntry {
  at: number;
  actor: string;
  action: string;
  targetType?: string | null;
  targetId?: string | null;
  details?: Record<string, unknown>;
}

/**
 * A row of the chain as hashed and as exports carry it. Its fields keep their stored snake_case
 * names on purpose: the hash covers these exact names (auditHash), and a vendor re-checks it.
 */
export interface AuditRow {
  seq: number;
  at: number;
  actor: string;
  action: string;
  target_type: string | null;
  target_id: string | null;
  /** Canonical JSON text of the entry's details. */
  details: string;
  prev_hash: string;
  hash: string;
}

/** The newest row's seq and hash ({0, GENESIS_HASH} for an empty log). */
export interface AuditHead {
  seq: number;
  hash: string;
}

/** Where the chain first fails to hold. */
export interface ChainBreak {
  seq: number;
  reason: string;
}

/** The prev_hash of row 1. */
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

/** The store seam for the audit log (storage/audit.ts implements it on SQLite). */
export interface AuditLog {
  head(): AuditHead;
  /** Appends entries to the chain; call inside the caller's write transaction so the head cannot move. */
  append(entries: AuditEntry | AuditEntry[]): void;
  /** Up to `limit` rows with seq > afterSeq, in seq order. */
  page(afterSeq: number, limit: number): AuditRow[];
  /** The rows with afterSeq < seq <= toSeq, in seq order, read lazily (an export may carry many). */
  range(afterSeq: number, toSeq: number): Iterable<AuditRow>;
  row(seq: number): AuditRow | undefined;
  /** The audit head the newest sync export carried to the vendor; undefined before the first export. */
  exportedHead(): (AuditHead & { exportSeq: number }) | undefined;
}

/** A page of the log: `nextCursor` is the seq to continue after (decimal), null on the last page. */
export interface AuditPage {
  rows: AuditRow[];
  nextCursor: string | null;
  head: AuditHead;
}

/** The outcome of walking the chain. */
export interface AuditCheck {
  ok: boolean;
  /** Rows read (up to and including the first break). */
  rows: number;
  head: AuditHead;
  firstBreak: ChainBreak | null;
}

export type AuditService = ReturnType<typeof createAuditService>;

/** The one way the faces read the audit log. */
export function createAuditService({ log }: { log: AuditLog }) {
  return {
    /** The newest row's seq and hash. Throws only what storage throws (a read that fails). */
    head(): AuditHead {
      return log.head();
    },

    /**
     * One page in seq order, after `afterSeq` (0: from the first row); `limit` rows at most
     * (the caller bounds it: 1 to 500 over HTTP).
     */
    page(afterSeq: number, limit: number): AuditPage {
      // This list's cursor is the bare seq (documented as such), not an opaque one.
      const page = pageOf(log.page(afterSeq, limit + 1), limit, (r) => String(r.seq));
      return { rows: page.items, nextCursor: page.nextCursor, head: log.head() };
    },

    /** The rows a sync export carries: afterSeq < seq <= toSeq, in order. */
    rowsBetween(afterSeq: number, toSeq: number): Iterable<AuditRow> {
      return log.range(afterSeq, toSeq);
    },

    /**
     * Walks the chain from row 1: every seq present and in order, every prev_hash the hash of the
     * row before, every hash that of its row; then the head the last export carried to the vendor
     * must still be in the chain (so removing the newest rows shows too). Reports the first break.
     */
    verify(): AuditCheck {
      const head = log.head();
      let prev = GENESIS_HASH;
      let rows = 0;
      let firstBreak: ChainBreak | null = null;
      for (const r of log.range(0, Number.MAX_SAFE_INTEGER)) {
        rows++;
        const expectSeq = rows;
        if (r.seq !== expectSeq)
          firstBreak = { seq: expectSeq, reason: `row ${expectSeq} is missing` };
        else if (r.prev_hash !== prev)
          firstBreak = { seq: r.seq, reason: 'prev_hash does not match the previous row' };
        else if (auditHash(prev, r) !== r.hash)
          firstBreak = { seq: r.seq, reason: 'row content does not match its hash' };
        if (firstBreak) break;
        prev = r.hash;
      }
      const exported = firstBreak === null ? log.exportedHead() : undefined;
      if (exported && exported.seq > 0 && log.row(exported.seq)?.hash !== exported.hash) {
        firstBreak = {
          seq: exported.seq,
          reason: `the audit head carried by export ${exported.exportSeq} (row ${exported.seq}) is no longer in the chain`,
        };
      }
      return { ok: firstBreak === null, rows, head, firstBreak };
    },
  };
}
