/**
 * Consistent online snapshots. `VACUUM INTO` from a read-only connection in a worker thread: in
 * WAL mode it reads one snapshot of the database without blocking the writer, and the worker keeps
 * the event loop of the node free, so writes go on while it runs. The copy records its own LSN
 * (`_flotilla_meta.applied_lsn` is part of the copied data), so the LSN is exact by construction.
 *
 * Rejected: the backup API (restarts whenever another connection writes, so under steady writes it
 * never finishes); copying the file (not consistent with the WAL); serialize() (the whole database
 * in memory at once).
 */
import { Worker } from 'node:worker_threads';

export interface SnapshotFile {
  file: string;
  lsn: number;
  epoch: number;
  bytes: number;
  sha256: string;
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const crypto = require('node:crypto');
const Database = require(workerData.driver);
try {
  const src = new Database(workerData.source, { readonly: true, fileMustExist: true });
  src.pragma('busy_timeout = 10000');
  src.exec("VACUUM INTO '" + workerData.dest.replace(/'/g, "''") + "'");
  src.close();
  const snap = new Database(workerData.dest);
  snap.pragma('journal_mode = DELETE');
  const meta = Object.fromEntries(snap.prepare('SELECT key, value FROM _flotilla_meta').raw().all());
  snap.close();
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(workerData.dest, 'r');
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
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { source, dest, driver: require.resolve('better-sqlite3') } });
    worker.once('message', (m: { ok: boolean; message?: string; lsn: number; epoch: number; bytes: number; sha256: string }) => {
      if (m.ok) resolve({ file: dest, lsn: m.lsn, epoch: m.epoch, bytes: m.bytes, sha256: m.sha256 });
      else reject(new Error(`snapshot of ${source}: ${m.message}`));
      void worker.terminate();
    });
    worker.once('error', reject);
  });
}
