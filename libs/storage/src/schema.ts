/**
 * Flotilla's own tables inside every replica's database file. The replication log lives in the
 * same file as the data, so a data change and its log entry commit in one SQLite transaction:
 * no two-phase commit between a log file and the store, and kill -9 leaves both consistent.
 */
import type Database from 'better-sqlite3';

export const SCHEMA_VERSION = 1;

export function createSchema(db: Database.Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS _flotilla_meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS _flotilla_log(
      lsn INTEGER PRIMARY KEY,
      epoch INTEGER NOT NULL,
      ts INTEGER NOT NULL,
      crc INTEGER NOT NULL,
      -- Payload length, so retention never reads payloads (length() of TEXT reads the whole value).
      size INTEGER NOT NULL,
      payload TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS _flotilla_epochs(epoch INTEGER PRIMARY KEY, start_lsn INTEGER NOT NULL);
    -- Idempotency keys: the answer given (results, RETURNING rows included), when (ts, the entry's
    -- time: kept IDEMPOTENCY_KEY_RETENTION_MS after it, whatever the log keeps) and a digest of
    -- the request (req: a key reused for another request is refused; '' in rows from before it).
    CREATE TABLE IF NOT EXISTS _flotilla_idem(
      key TEXT PRIMARY KEY,
      lsn INTEGER NOT NULL,
      epoch INTEGER NOT NULL,
      results TEXT NOT NULL,
      ts INTEGER NOT NULL DEFAULT 0,
      req TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
    -- A rewind deletes the keys of undone entries (lsn > N): without it, a scan of every key.
    CREATE INDEX IF NOT EXISTS _flotilla_idem_lsn ON _flotilla_idem(lsn);
    INSERT OR IGNORE INTO _flotilla_meta(key, value) VALUES
      ('schema_version', ${SCHEMA_VERSION}), ('applied_lsn', 0), ('applied_ts', 0), ('applied_epoch', 0);
  `);
  // Databases made before 2026-11-28 have the key table without ts and req.
  const cols = new Set((db.prepare("SELECT name FROM pragma_table_info('_flotilla_idem')").pluck().all() as string[]));
  if (!cols.has('ts')) db.exec('ALTER TABLE _flotilla_idem ADD COLUMN ts INTEGER NOT NULL DEFAULT 0');
  if (!cols.has('req')) db.exec("ALTER TABLE _flotilla_idem ADD COLUMN req TEXT NOT NULL DEFAULT ''");
  db.exec('CREATE INDEX IF NOT EXISTS _flotilla_idem_ts ON _flotilla_idem(ts)');
}
