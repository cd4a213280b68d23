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
