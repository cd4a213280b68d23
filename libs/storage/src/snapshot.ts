/**
 * Consistent online snapshots, made in a worker thread so the node's event loop (and its writes)
 * go on. The worker opens the snapshot file as its main database, attaches the live database, and
 * copies every table inside one read transaction: in WAL mode that reads one consistent state
 * without blocking the writer. The copy records its own LSN (`_flotilla_meta.applied_lsn` is
 * copied data), so the LSN is exact by construction. The replication log is not copied: a new
 * follower needs only what comes after the snapshot, and the log can be as large as the data.
 *
 * Rejected: VACUUM INTO (copies the log too, doubling the transfer for row-heavy logs); the backup
 * API (restarts whenever another connection writes, so under steady writes it never finishes);
 * copying the file (not consistent with the WAL); serialize() (the whole database in memory).
 */
import { Worker } from 'node:worker_threads';

export interface SnapshotFile {
  file: string;
  lsn: number;
  epoch: number;
  bytes: number;
  sha256: string;
}

/** Rows copied per statement while making a snapshot. */
export const SNAPSHOT_ROWS_PER_SLICE = 256;
/** The snapshot file is flushed to disk whenever it grew by this much. */
export const SNAPSHOT_FLUSH_EVERY_BYTES = 8 * 1024 * 1024;

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const crypto = require('node:crypto');
const Database = require(workerData.driver);
const q = (name) => '"' + name.replace(/"/g, '""') + '"';
// Lowest CPU priority for this thread only (Linux: a thread's id works as a pid for setpriority):
// the node's own event loop, which commits the writes, must win every contest for a core.
try { require('node:os').setPriority(Number(fs.readlinkSync('/proc/thread-self').split('/').pop()), 19); } catch (_) { /* not Linux */ }
try {
  const dest = new Database(workerData.dest);
  // Built in one go and fsynced once at the end: no journal needed for a file nobody uses yet.
  dest.pragma('journal_mode = OFF');
  dest.pragma('synchronous = OFF');
  dest.pragma('busy_timeout = 10000');
  const flushFd = fs.openSync(workerData.dest, 'r+');
  let flushedBytes = 0;
  const flushIfDirty = () => {
    const size = fs.fstatSync(flushFd).size;
    if (size - flushedBytes >= workerData.flushEveryBytes) { fs.fdatasyncSync(flushFd); flushedBytes = size; }
  };
  dest.exec("ATTACH '" + workerData.source.replace(/'/g, "''") + "' AS src");
  dest.exec('BEGIN');
  const objects = dest.prepare("SELECT type, name, sql FROM src.sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END, rowid").all();
  let hasSequence = false;
  for (const o of objects) {
    if (o.type !== 'table') continue;
    dest.exec(o.sql);
    if (o.name === '_flotilla_log') continue;
    const cols = dest.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(o.name).map(q);
    const withoutRowid = /WITHOUT\\s+ROWID\\s*;?\\s*$/i.test(o.sql);
    const c = (withoutRowid ? [] : ['rowid']).concat(cols).join(', ');
    if (withoutRowid) {
      dest.exec('INSERT INTO main.' + q(o.name) + '(' + c + ') SELECT ' + c + ' FROM src.' + q(o.name));
    } else {
      // In slices by rowid, flushing every few MB: a burst of hundreds of MB of dirty pages would
      // make the leader's own commit fsyncs wait behind it.
      const copy = dest.prepare('INSERT INTO main.' + q(o.name) + '(' + c + ') SELECT ' + c + ' FROM src.' + q(o.name) + ' WHERE rowid > ? ORDER BY rowid LIMIT ' + workerData.rowsPerSlice);
      const maxRowid = dest.prepare('SELECT max(rowid) FROM main.' + q(o.name)).pluck();
      let after = -9223372036854775808n;
      dest.defaultSafeIntegers(true);
      for (;;) {
        const r = copy.run(after);
        if (r.changes === 0) break;
        after = maxRowid.get();
        flushIfDirty();
      }
      dest.defaultSafeIntegers(false);
    }
    if (/AUTOINCREMENT/i.test(o.sql)) hasSequence = true;
  }
  if (hasSequence) dest.exec('DELETE FROM main.sqlite_sequence; INSERT INTO main.sqlite_sequence SELECT * FROM src.sqlite_sequence');
  for (const o of objects) if (o.type !== 'table') dest.exec(o.sql);
  const meta = Object.fromEntries(dest.prepare('SELECT key, value FROM main._flotilla_meta').raw().all());
  dest.exec('COMMIT');
  dest.exec('DETACH src');
  dest.close();
  fs.closeSync(flushFd);
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(workerData.dest, 'r+');
  fs.fsyncSync(fd);
  const buf = Buffer.allocUnsafe(1 << 20);
  let n, bytes = 0;
  while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) { hash.update(buf.subarray(0, n)); bytes += n; }
  fs.closeSync(fd);
  parentPort.postMessage({ ok: true, lsn: Number(meta.applied_lsn), epoch: Number(meta.applied_epoch), bytes, sha256: hash.digest('hex') });
} catch (err) {
  parentPort.postMessage({ ok: false, message: String(err && err.message || err) });
}
`;

/** Writes a consistent copy of `source` to `dest` (which must not exist) without blocking writers. */
export function createSnapshot(source: string, dest: string): Promise<SnapshotFile> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { source, dest, driver: require.resolve('better-sqlite3'), rowsPerSlice: SNAPSHOT_ROWS_PER_SLICE, flushEveryBytes: SNAPSHOT_FLUSH_EVERY_BYTES } });
    worker.once('message', (m: { ok: boolean; message?: string; lsn: number; epoch: number; bytes: number; sha256: string }) => {
      if (m.ok) resolve({ file: dest, lsn: m.lsn, epoch: m.epoch, bytes: m.bytes, sha256: m.sha256 });
      else reject(new Error(`snapshot of ${source}: ${m.message}`));
      void worker.terminate();
    });
    worker.once('error', reject);
  });
}
