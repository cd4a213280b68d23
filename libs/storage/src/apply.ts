/**
 * Applying logical changes to a database: the follower's half of replication, and (with the
 * before-images, in reverse) the rewind of a deposed leader. Every row operation must touch exactly
 * one row; anything else means this replica has diverged, and it stops rather than serve wrong data.
 */
import type Database from 'better-sqlite3';
import type { Change, SqlValue } from '@flotilla/protocol';
import { BindValue, logValueToBind } from './log-value';
import { quoteIdent, readTableMeta, TableMeta } from './table-meta';

/** This replica's data does not match the log: a violated invariant, never an expected error. */
export class DivergenceError extends Error {
  override readonly name = 'DivergenceError';
}

export class ChangeApplier {
  private metas = new Map<string, TableMeta>();
  private stmts = new Map<string, Database.Statement>();

  constructor(private readonly db: Database.Database) {}

  /** Forget cached table shapes and statements (after DDL, or after the file was replaced). */
  invalidate(): void {
    this.metas.clear();
    this.stmts.clear();
  }

  private meta(table: string): TableMeta {
    let m = this.metas.get(table);
    if (!m) {
      m = readTableMeta(this.db, table);
      if (m.cols.length === 0) throw new DivergenceError(`table ${table} does not exist here`);
      this.metas.set(table, m);
    }
    return m;
  }

  private stmt(key: string, sql: () => string): Database.Statement {
    let s = this.stmts.get(key);
    if (!s) {
      s = this.db.prepare(sql());
      this.stmts.set(key, s);
    }
    return s;
  }

  /** Applies one change forwards. `cols` are the leader's column names for the table. */
  apply(change: Change, cols: string[] | undefined): void {
    if (change.op === 'ddl') {
      this.db.exec(change.sql);
      this.invalidate();
      return;
    }
    const m = this.meta(change.t);
    const names = cols ?? m.cols;
    const withRowid = m.hasRowid && !m.pkIsRowid && change.rid !== null;
    let result: Database.RunResult;
    switch (change.op) {
      case 'ins': {
        const s = this.stmt(`i|${change.t}|${withRowid}|${names.join(',')}`, () => {
          const c = (withRowid ? ['rowid'] : []).concat(names.map(quoteIdent));
          return `INSERT INTO main.${quoteIdent(change.t)}(${c.join(', ')}) VALUES (${c.map(() => '?').join(', ')})`;
        });
        const values = change.row.map(logValueToBind);
        result = s.run(...(withRowid ? [BigInt(change.rid as string), ...values] : values));
        break;
      }
      case 'del': {
        // A rowid table is keyed by its replicated rowid: its primary key (not an alias) may hold
        // NULLs, which SQLite lets several rows share.
        if (this.byRowid(m, change.rid)) {
          result = this.stmt(`dr|${change.t}`, () => `DELETE FROM main.${quoteIdent(change.t)} WHERE rowid = ?`).run(BigInt(change.rid as string));
          break;
        }
        const s = this.stmt(`d|${change.t}`, () => `DELETE FROM main.${quoteIdent(change.t)} WHERE ${this.whereKey(m)}`);
        result = s.run(...this.keyValues(m, change.key));
        break;
      }
      case 'upd': {
        const orid = change.orid ?? null;
        const rowidKey = this.byRowid(m, orid);
        const s = this.stmt(`u|${change.t}|${withRowid}|${rowidKey}|${names.join(',')}`, () => {
          const sets = names.map((c) => `${quoteIdent(c)} = ?`);
          if (withRowid) sets.unshift('rowid = ?');
          return `UPDATE main.${quoteIdent(change.t)} SET ${sets.join(', ')} WHERE ${rowidKey ? 'rowid = ?' : this.whereKey(m)}`;
        });
        const values = change.row.map(logValueToBind);
        const args = withRowid ? [BigInt(change.rid as string), ...values] : values;
        result = s.run(...args, ...(rowidKey ? [BigInt(orid as string)] : this.keyValues(m, change.key)));
        break;
      }
    }
    if (result.changes !== 1) {
      throw new DivergenceError(`${change.op} on ${change.t} key ${JSON.stringify((change as { key?: unknown }).key ?? change.rid)} changed ${result.changes} rows, expected 1`);
    }
  }

  /** Undoes one change using its before-image (rewind of transactions a new leader never had). */
  undo(change: Change, cols: string[] | undefined): void {
    if (change.op === 'ddl') {
      throw new DivergenceError(`cannot undo DDL "${change.sql}": re-seed from a snapshot`);
    }
    switch (change.op) {
      case 'ins': {
        const m = this.meta(change.t);
        const key = m.pk.length > 0 && !m.pkIsRowid ? pick(cols ?? m.cols, change.row, m.pk) : [ridValue(change.rid)];
        this.apply({ op: 'del', t: change.t, rid: change.rid, key, old: change.row }, cols);
        return;
      }
      case 'del':
        this.apply({ op: 'ins', t: change.t, rid: change.rid, row: change.old }, cols);
        return;
      case 'upd': {
        const m = this.meta(change.t);
        const key = m.pk.length > 0 && !m.pkIsRowid ? pick(cols ?? m.cols, change.row, m.pk) : [ridValue(change.rid)];
        // Back to the old rowid (known since entries carry orid), finding the row by its new one.
        const ownPk = m.pk.length > 0 && !m.pkIsRowid;
        const oldRid = ownPk ? (change.orid ?? change.rid) : ridOf(change.key[0]);
        const orid = ownPk && change.orid !== undefined ? change.rid : undefined;
        this.apply({ op: 'upd', t: change.t, rid: oldRid, orid, key: key as never, old: change.row, row: change.old }, cols);
        return;
      }
    }
  }

  /** True when a change of a rowid table with a primary key of its own can name its row by `rid`. */
  private byRowid(m: TableMeta, rid: string | null): boolean {
    return m.hasRowid && !m.pkIsRowid && m.pk.length > 0 && rid !== null;
  }

  private whereKey(m: TableMeta): string {
    if (m.pk.length === 0 || m.pkIsRowid) return 'rowid = ?';
    return m.pk.map((c) => `${quoteIdent(c)} IS ?`).join(' AND ');
  }

  private keyValues(m: TableMeta, key: unknown[]): BindValue[] {
    return key.map(logValueToBind);
  }
}

/**
 * A rowid (decimal string in changes) as a log value: a plain number within 2^53, `$i` beyond, as
 * capture writes them. `Number()` of a Snowflake-sized rowid rounds it: the rewind then deleted
 * or restored the wrong row.
 */
function ridValue(rid: string | null): SqlValue {
  if (rid === null) return null;
  return Number.isSafeInteger(Number(rid)) ? Number(rid) : { $i: rid };
}

/** The decimal string of a rowid given as a log value (a number, or `$i` beyond 2^53). */
function ridOf(v: unknown): string {
  if (typeof v === 'object' && v !== null && typeof (v as { $i?: unknown }).$i === 'string') return (v as { $i: string }).$i;
  return String(v);
}

function pick(cols: string[], row: unknown[], wanted: string[]): never[] {
  return wanted.map((w) => row[cols.indexOf(w)]) as never[];
}
