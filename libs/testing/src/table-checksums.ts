import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';

/** Row count and content hash of one table. */
export interface TableChecksum {
  rows: number;
  sha256: string;
}

/** True for tables that belong to Flotilla or SQLite rather than to the user. */
export function isInternalTable(name: string): boolean {
  return name.startsWith('_flotilla') || name.startsWith('sqlite_');
}

function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** JSON for one row: integers as decimal strings (exact for 64 bits), blobs as base64. */
export function rowJson(row: unknown[]): string {
  return JSON.stringify(row, (_key, value: unknown) => {
    if (typeof value === 'bigint') return value.toString();
    if (value && typeof value === 'object' && (value as { type?: string }).type === 'Buffer') {
      return { $b: Buffer.from((value as { data: number[] }).data).toString('base64') };
    }
    return value;
  });
}

/**
 * Opens `dbFile` read-only and returns, for every user table (not `_flotilla*`, not `sqlite_*`),
 * its row count and the sha256 of its rows as JSON lines in rowid order (primary-key order for
 * WITHOUT ROWID tables). Two replicas with equal data give equal checksums whatever their files
 * look like byte-wise.
 */
export function readTableChecksums(dbFile: string): Record<string, TableChecksum> {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const tables = db
      .prepare(`SELECT name, wr FROM pragma_table_list WHERE type = 'table' AND schema = 'main' ORDER BY name`)
      .all() as { name: string; wr: number }[];
    const result: Record<string, TableChecksum> = {};
    for (const { name, wr } of tables) {
      if (isInternalTable(name)) continue;
      let orderBy = 'rowid';
      if (wr) {
        const pk = (db.prepare(`SELECT name, pk FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk`).all(name) as { name: string }[]).map(
          (c) => quoteIdentifier(c.name),
        );
        orderBy = pk.join(', ');
      }
      const statement = db.prepare(`SELECT * FROM ${quoteIdentifier(name)} ORDER BY ${orderBy}`).raw(true).safeIntegers(true);
      const hash = createHash('sha256');
      let rows = 0;
      for (const row of statement.iterate() as Iterable<unknown[]>) {
        hash.update(rowJson(row));
        hash.update('\n');
        rows++;
      }
      result[name] = { rows, sha256: hash.digest('hex') };
    }
    return result;
  } finally {
    db.close();
  }
}
