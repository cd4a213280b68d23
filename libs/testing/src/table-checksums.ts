import Database from 'better-sqlite3';
import { tableChecksums } from '@flotilla/storage';

/** Row count and content hash of one table. */
export interface TableChecksum {
  rows: number;
  sha256: string;
}

/**
 * Opens `dbFile` read-only and returns, for every user table (not `_flotilla*`, not `sqlite_*`),
 * its row count and the sha256 of its rows, type-exact (storage's own {@link tableChecksums}, the
 * one replicas answer with): two replicas with equal data give equal checksums whatever their
 * files look like byte-wise, and an INTEGER 5 never equals a REAL 5.0.
 */
export function readTableChecksums(dbFile: string): Record<string, TableChecksum> {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    return tableChecksums(db);
  } finally {
    db.close();
  }
}
