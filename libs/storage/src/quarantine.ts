/**
 * Transactions a replica undid when it rewound after a failover, kept with their rows, LSN, epoch
 * and times: nothing is ever lost silently. A separate SQLite file next to the database, so a
 * re-seed from a snapshot (which replaces the database file) keeps it.
 */
import Database from 'better-sqlite3';
import type { Change, DiscardedTransaction } from '@flotilla/protocol';

/** Most transactions listed by one call. */
export const QUARANTINE_LIST_MAX = 10_000;

export class Quarantine {
  private readonly db: Database.Database;

  constructor(readonly file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS discarded(
      lsn INTEGER NOT NULL, epoch INTEGER NOT NULL, ts INTEGER NOT NULL, discarded_at INTEGER NOT NULL,
      payload TEXT NOT NULL, PRIMARY KEY (epoch, lsn)) WITHOUT ROWID`);
  }

  /** Keeps transactions (idempotent: the same (epoch, lsn) is kept once). Durable on return. */
  add(entries: { lsn: number; epoch: number; ts: number; payload: string }[], discardedAt: number): void {
    const put = this.db.prepare('INSERT OR IGNORE INTO discarded(lsn, epoch, ts, discarded_at, payload) VALUES (?, ?, ?, ?, ?)');
    this.db.transaction(() => {
      for (const e of entries) put.run(e.lsn, e.epoch, e.ts, discardedAt, e.payload);
    })();
  }

  list(node: string): DiscardedTransaction[] {
    const rows = this.db
      .prepare('SELECT lsn, epoch, ts, discarded_at AS discardedAt, payload FROM discarded ORDER BY discarded_at, lsn LIMIT ?')
      .all(QUARANTINE_LIST_MAX) as { lsn: number; epoch: number; ts: number; discardedAt: number; payload: string }[];
    return rows.map((r) => {
      const p = JSON.parse(r.payload) as { changes: Change[]; cols: Record<string, string[]> };
      return { node, lsn: String(r.lsn), epoch: r.epoch, ts: r.ts, discardedAt: r.discardedAt, changes: p.changes, cols: p.cols };
    });
  }

  count(): number {
    return this.db.prepare('SELECT count(*) FROM discarded').pluck().get() as number;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
