/**
 * What replication needs to know about a user table, read from SQLite's own schema.
 */
import type Database from 'better-sqlite3';

/** Tables Flotilla keeps for itself in every database file; users may not touch them. */
export const INTERNAL_PREFIX = '_flotilla';

export interface TableMeta {
  name: string;
  /** Stored columns in declaration order (generated columns excluded). */
  cols: string[];
  /** Primary key columns in key order; empty when the table has none. */
  pk: string[];
  /** False for WITHOUT ROWID tables. */
  hasRowid: boolean;
  /** True when the single primary key column is an alias of the rowid (INTEGER PRIMARY KEY). */
  pkIsRowid: boolean;
}

/** `"name"` with embedded quotes doubled: safe for any identifier. */
export function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

/** `'text'` with embedded quotes doubled. */
export function quoteText(text: string): string {
  return "'" + text.replace(/'/g, "''") + "'";
}

export function isUserTable(name: string): boolean {
  return !name.startsWith(INTERNAL_PREFIX) && !name.startsWith('sqlite_');
}

/** Every user table of the `main` schema, in name order. */
export function listUserTables(db: Database.Database): string[] {
  const rows = db.prepare("SELECT name FROM main.sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[];
  return rows.map((r) => r.name).filter(isUserTable);
}

export function readTableMeta(db: Database.Database, name: string): TableMeta {
  const info = db.prepare('SELECT name, type, pk FROM pragma_table_info(?)').all(name) as { name: string; type: string; pk: number }[];
  const cols = info.map((c) => c.name);
  const pkCols = info.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk);
  // SQLite's own answer (`WITHOUT ROWID, STRICT` and comments included), not a parse of its SQL.
  const listed = db.prepare("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?").get(name) as { wr: number } | undefined;
  const hasRowid = !listed || listed.wr === 0;
  // An INTEGER PRIMARY KEY aliases the rowid unless declared DESC: then SQLite gives it an index of
  // its own (origin 'pk'), as any other primary key.
  const pkIndex = db.prepare("SELECT 1 FROM pragma_index_list(?) WHERE origin = 'pk'").get(name) !== undefined;
  const pkIsRowid = hasRowid && pkCols.length === 1 && pkCols[0].type.toUpperCase() === 'INTEGER' && !pkIndex;
  return { name, cols, pk: pkCols.map((c) => c.name), hasRowid, pkIsRowid };
}

/** Names of the rowid that a column of the same name hides (SQLite resolves the column first). */
const ROWID_NAMES = ['rowid', '_rowid_', 'oid'];
/** Foreign-key actions on update that rewrite a row of the table being updated. */
const SELF_UPDATE_ACTIONS = new Set(['CASCADE', 'SET NULL', 'SET DEFAULT']);

/**
 * Why `m` cannot be replicated row by row (null when it can), checked after each schema change:
 * - a rowid table with a column named rowid, _rowid_ or oid: capture and apply name rows by the
 *   rowid, and the column would be read instead (every follower halted on its first change);
 * - a foreign key to its own table with an ON UPDATE action that rewrites rows: SQLite runs the
 *   action on the very row being updated before that row's capture trigger fires, whose NEW then
 *   holds the statement's values, not the row's: followers diverged silently, or halted.
 */
export function replicationHazard(db: Database.Database, m: TableMeta): string | null {
  if (m.hasRowid) {
    const all = db.prepare('SELECT name FROM pragma_table_xinfo(?)').pluck().all(m.name) as string[];
    const shadow = all.find((c) => ROWID_NAMES.includes(c.toLowerCase()));
    if (shadow !== undefined) return `table ${m.name} has a column named ${shadow}, which hides the rowid that replication names rows by; rename the column (or make the table WITHOUT ROWID)`;
  }
  const fks = db.prepare('SELECT "table" AS target, on_update AS onUpdate FROM pragma_foreign_key_list(?)').all(m.name) as { target: string; onUpdate: string }[];
  const self = fks.find((f) => f.target.toLowerCase() === m.name.toLowerCase() && SELF_UPDATE_ACTIONS.has(f.onUpdate.toUpperCase()));
  if (self) return `table ${m.name} has a foreign key to itself with ON UPDATE ${self.onUpdate}, which rewrites the row being updated where replication cannot see it; use ON UPDATE NO ACTION or RESTRICT (and update the referencing rows in the same request)`;
  return null;
}
