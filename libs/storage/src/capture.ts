/**
 * Change capture on the leader: TEMP triggers (per connection, never in the database file) append
 * every row change of a user table to a TEMP capture table, as JSON built by SQLite itself.
 * After a request's statements ran, the captured rows become the request's log entry.
 *
 * Values are encoded by {@link encodeColumnSql} so that value and type round-trip exactly: JSON
 * integers are INTEGER, JSON non-integral numbers REAL, `{"$r": n}` a REAL with an integral value,
 * `{"$i": "decimal"}` an INTEGER beyond 2^53, `{"$x": hex}` a BLOB, strings TEXT. (SQLite 3.53, as
 * bundled by better-sqlite3 12, renders REAL with round-trip precision.)
 */
import type Database from 'better-sqlite3';
import { listUserTables, quoteIdent, quoteText, readTableMeta, TableMeta } from './table-meta';

export const CAPTURE_TABLE = 'temp._flotilla_capture';
const TRIGGER_PREFIX = '_flotilla_cap_';
/**
 * A request whose captured changes grow past this many bytes is stopped in the statement that
 * does it. The log entry's own limit (900 KiB, checked once the request ran) refuses far less;
 * this bounds what capture holds meanwhile: an UPDATE of a million rows, or a DELETE of 300 MB of
 * blobs, held gigabytes (in SQLite's temp store, then as JS strings) before it was refused, more
 * than a replica's memory limit.
 */
export const CAPTURE_BYTES_MAX = 4 * 900 * 1024;
/** The running size is checked every this many captured rows (a lone row costs no check). */
const CAPTURE_CHECK_EVERY_ROWS = 64;
/** What a change adds in the log entry beyond its row images (op, table, rowid, key). */
const CAPTURE_ROW_OVERHEAD_BYTES = 64;
/** The message of the statement error the check raises (mapped to 413 PAYLOAD_TOO_LARGE). */
export const CAPTURE_LIMIT_MESSAGE = 'flotilla: the request changes more than can be replicated';

/** SQL for one column value in capture JSON. */
export function encodeColumnSql(ref: string): string {
  return (
    `CASE typeof(${ref}) WHEN 'blob' THEN json_object('$x', hex(${ref})) ` +
    `WHEN 'integer' THEN CASE WHEN ${ref} BETWEEN -9007199254740991 AND 9007199254740991 THEN ${ref} ` +
    `ELSE json_object('$i', CAST(${ref} AS TEXT)) END ` +
    // A REAL with an integral value would read back as a JSON integer: mark it so it stays REAL.
    // Beyond 2^53 every double is integral (and CAST saturates at 2^63): mark those too.
    // SQLite's JSON (and printf) write -0.0 as 0.0: a negative zero, told apart by its sign in
    // atan2 (SQLITE_ENABLE_MATH_FUNCTIONS), goes as the string '-0'.
    `WHEN 'real' THEN CASE WHEN ${ref} = CAST(${ref} AS INTEGER) OR abs(${ref}) >= 9007199254740992.0 THEN ` +
    `json_object('$r', CASE WHEN ${ref} = 0 AND atan2(${ref}, -1) < 0 THEN '-0' ELSE ${ref} END) ELSE ${ref} END ` +
    `ELSE ${ref} END`
  );
}

function rowJson(alias: 'NEW' | 'OLD', cols: string[]): string {
  if (cols.length === 0) return "'[]'";
  return `json_array(${cols.map((c) => encodeColumnSql(`${alias}.${quoteIdent(c)}`)).join(', ')})`;
}

/** The key of a row: its primary key values, or its rowid when the table has no primary key. */
function keyJson(alias: 'NEW' | 'OLD', meta: TableMeta): string {
  if (meta.pk.length === 0 || meta.pkIsRowid) return 'NULL';
  return rowJson(alias, meta.pk);
}

function ridSql(alias: 'NEW' | 'OLD', meta: TableMeta): string {
  return meta.hasRowid ? `CAST(${alias}.rowid AS TEXT)` : 'NULL';
}

/** Creates the capture table and one trigger per operation on every user table. */
export function installCapture(db: Database.Database): Map<string, TableMeta> {
  db.exec(`CREATE TEMP TABLE IF NOT EXISTS _flotilla_capture(
    seq INTEGER PRIMARY KEY, op TEXT NOT NULL, tbl TEXT NOT NULL, rid TEXT, nrid TEXT, okey TEXT, old TEXT, new TEXT)`);
  removeCaptureTriggers(db);
  // seq restarts at 1 for each request (the table is emptied after each). Every 64th row adds the
  // size of the last 64 (an index range on seq) to a running total, so the check costs O(1) per row:
  // summing the whole table each time made a request of 150,000 rows take 17 s instead of 0.8.
  db.exec(`CREATE TEMP TABLE IF NOT EXISTS _flotilla_capture_bytes(n INTEGER NOT NULL)`);
  db.exec(`INSERT INTO temp._flotilla_capture_bytes(n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM temp._flotilla_capture_bytes)`);
  db.exec(`CREATE TEMP TRIGGER IF NOT EXISTS ${TRIGGER_PREFIX}limit AFTER INSERT ON _flotilla_capture
    WHEN NEW.seq % ${CAPTURE_CHECK_EVERY_ROWS} = 0 BEGIN
      UPDATE _flotilla_capture_bytes SET n = n + (SELECT coalesce(sum(coalesce(length(old), 0) + coalesce(length(new), 0) + ${CAPTURE_ROW_OVERHEAD_BYTES}), 0)
        FROM ${CAPTURE_TABLE} WHERE seq > NEW.seq - ${CAPTURE_CHECK_EVERY_ROWS});
      SELECT RAISE(ABORT, '${CAPTURE_LIMIT_MESSAGE}') WHERE (SELECT n FROM temp._flotilla_capture_bytes) > ${CAPTURE_BYTES_MAX};
    END;`);
  const metas = new Map<string, TableMeta>();
  listUserTables(db).forEach((name, i) => {
    const meta = readTableMeta(db, name);
    metas.set(name, meta);
    const on = `main.${quoteIdent(name)}`;
    const t = quoteText(name);
    db.exec(`
      CREATE TEMP TRIGGER ${TRIGGER_PREFIX}${i}_i AFTER INSERT ON ${on} BEGIN
        INSERT INTO ${CAPTURE_TABLE}(op, tbl, rid, okey, old, new) VALUES ('ins', ${t}, ${ridSql('NEW', meta)}, NULL, NULL, ${rowJson('NEW', meta.cols)});
      END;
      CREATE TEMP TRIGGER ${TRIGGER_PREFIX}${i}_d AFTER DELETE ON ${on} BEGIN
        INSERT INTO ${CAPTURE_TABLE}(op, tbl, rid, okey, old, new) VALUES ('del', ${t}, ${ridSql('OLD', meta)}, ${keyJson('OLD', meta)}, ${rowJson('OLD', meta.cols)}, NULL);
      END;
      CREATE TEMP TRIGGER ${TRIGGER_PREFIX}${i}_u AFTER UPDATE ON ${on} BEGIN
        INSERT INTO ${CAPTURE_TABLE}(op, tbl, rid, nrid, okey, old, new) VALUES ('upd', ${t}, ${ridSql('OLD', meta)}, ${ridSql('NEW', meta)}, ${keyJson('OLD', meta)}, ${rowJson('OLD', meta.cols)}, ${rowJson('NEW', meta.cols)});
      END;`);
  });
  return metas;
}

/** Drops every capture trigger (before DDL, so that DROP COLUMN and friends are not blocked by them). */
export function removeCaptureTriggers(db: Database.Database): void {
  const names = db
    .prepare(`SELECT name FROM temp.sqlite_master WHERE type = 'trigger' AND name LIKE '${TRIGGER_PREFIX}%'`)
    .all() as { name: string }[];
  for (const { name } of names) db.exec(`DROP TRIGGER temp.${quoteIdent(name)}`);
}

/** A captured row, as the triggers wrote it. */
export interface CapturedRow {
  op: 'ins' | 'del' | 'upd';
  tbl: string;
  rid: string | null;
  /** New rowid of an updated row (equal to rid unless the update changed the rowid). */
  nrid: string | null;
  okey: string | null;
  old: string | null;
  new: string | null;
}

/** Thrown by {@link CaptureReader.drain} for TEXT that is not valid UTF-8 (its request is refused). */
export class InvalidTextError extends Error {
  override readonly name = 'InvalidTextError';
}

/** Reads and clears what was captured since the last call. */
export class CaptureReader {
  private readonly select: Database.Statement;
  private readonly clear: Database.Statement;
  private readonly clearBytes: Database.Statement;
  private readonly bytesOf: Database.Statement;
  constructor(db: Database.Database) {
    this.select = db.prepare(`SELECT seq, op, tbl, rid, nrid, okey, old, new FROM ${CAPTURE_TABLE} ORDER BY seq`);
    this.clear = db.prepare(`DELETE FROM ${CAPTURE_TABLE}`);
    this.clearBytes = db.prepare('UPDATE temp._flotilla_capture_bytes SET n = 0');
    this.bytesOf = db.prepare(`SELECT length(CAST(old AS BLOB)) AS old, length(CAST(new AS BLOB)) AS new FROM ${CAPTURE_TABLE} WHERE seq = ?`);
  }
  drain(): CapturedRow[] {
    const rows = this.select.all() as (CapturedRow & { seq: number })[];
    // TEXT that is not valid UTF-8 (CAST(x'ff' AS TEXT), a lone surrogate) reaches JavaScript with
    // U+FFFD in place of the bad bytes, so followers would store other bytes than the leader, and
    // no checksum would see it. A row whose JSON holds U+FFFD is checked against SQLite's own byte
    // count (a genuine U+FFFD is 3 bytes both ways; a replaced byte is not).
    for (const r of rows) {
      if (!r.new?.includes('\uFFFD') && !r.old?.includes('\uFFFD')) continue;
      const b = this.bytesOf.get(r.seq) as { old: number | null; new: number | null };
      const same = (text: string | null, bytes: number | null) => text === null || Buffer.byteLength(text) === bytes;
      if (!same(r.new, b.new) || !same(r.old, b.old)) {
        throw new InvalidTextError(`a TEXT value in ${r.tbl} is not valid UTF-8, and could not be replicated byte for byte: store such bytes as a BLOB (CAST(... AS BLOB)) instead`);
      }
    }
    if (rows.length > 0) {
      this.clear.run();
      if (rows.length >= CAPTURE_CHECK_EVERY_ROWS) this.clearBytes.run();
    }
    return rows;
  }
}

/**
 * Appends captured rows to a payload's `changes` JSON text without parsing the row JSON:
 * the hot path builds the payload by concatenation.
 */
export function changeJson(row: CapturedRow): string {
  const t = JSON.stringify(row.tbl);
  const rid = row.rid === null ? 'null' : `"${row.rid}"`;
  const key = row.okey ?? `[${ridValueJson(row.rid)}]`;
  switch (row.op) {
    case 'ins':
      return `{"op":"ins","t":${t},"rid":${rid},"row":${row.new}}`;
    case 'del':
      return `{"op":"del","t":${t},"rid":${rid},"key":${key},"old":${row.old}}`;
    case 'upd': {
      // An update carries the new rowid, and the old one (the key names the old row too, but a
      // primary key of a rowid table may hold NULLs and match several rows).
      const nrid = row.nrid === null ? 'null' : `"${row.nrid}"`;
      return `{"op":"upd","t":${t},"rid":${nrid},"orid":${rid},"key":${key},"old":${row.old},"row":${row.new}}`;
    }
  }
}

function ridValueJson(rid: string | null): string {
  if (rid === null) return 'null';
  return Number.isSafeInteger(Number(rid)) ? rid : `{"$i":"${rid}"}`;
}
