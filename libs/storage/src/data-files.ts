/**
 * Removing a large file without stalling the commits of the replica beside it.
 *
 * On a file system that discards freed blocks when its journal commits (ext4 mounted with
 * `discard`, as many cloud disks are), unlinking a large file frees all of its blocks in one
 * journal transaction, and the next fsync of anyone on that disk waits for the discard of all of
 * them. Measured on this project's CI machine (ext4, `discard`): while a 500 MB file was unlinked,
 * a 4 KiB append + fdatasync loop saw its worst call take 59–71 ms (three runs); while the same
 * file was truncated in 8 MiB steps, each followed by an fdatasync and a 20 ms pause, the worst
 * call took 4–6 ms. A leader deleting the 200–500 MB snapshot it served, or a follower the database
 * a snapshot replaced, would otherwise put that stall into the commits of the writes going on.
 * RocksDB's DeleteScheduler does the same for its SST files (rate-limited, chunked deletion).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Bytes freed per step. */
export const REMOVE_STEP_BYTES = 8 * 1024 * 1024;
/** Pause after each step (8 MiB / 20 ms: 500 MB in about 1.3 s). */
export const REMOVE_STEP_PAUSE_MS = 20;

export interface RemoveFileOptions {
  stepBytes?: number;
  pauseMs?: number;
  /** Called after each step with the size left (tests watch the steps through it). */
  onStep?: (bytesLeft: number) => void;
}

/**
 * Removes `file` a step at a time: truncate by `stepBytes`, fdatasync (so that step's blocks are
 * freed in a journal commit of their own), pause, repeat; then unlink. Resolves `true` when done,
 * `false` if there was no such file. The name is free as soon as this returns (the file is renamed
 * aside at once, to `<file>.removing-<random>`), so the caller may create `file` anew while the old
 * one shrinks. A file of one step or less goes at once. Whatever fails on the way, the file is
 * still unlinked, at once; only a failing rename or unlink rejects, and anything but a regular
 * file is refused untouched. Only for files nobody else reads: a truncation shrinks every hard
 * link to the file.
 */
export function removeFilePaced(file: string, options: RemoveFileOptions = {}): Promise<boolean> {
  const stepBytes = options.stepBytes ?? REMOVE_STEP_BYTES;
  const pauseMs = options.pauseMs ?? REMOVE_STEP_PAUSE_MS;
  if (!(stepBytes > 0)) return Promise.reject(new RangeError(`stepBytes must be positive, got ${stepBytes}`));
  const aside = `${file}${REMOVING_INFIX}${randomBytes(6).toString('hex')}`;
  try {
    if (!fs.lstatSync(file).isFile()) throw new Error(`not a regular file, not removed: ${file}`);
    fs.renameSync(file, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Promise.resolve(false);
    return Promise.reject(err as Error);
  }
  return shrinkAndUnlink(aside, stepBytes, pauseMs, options.onStep).then(() => true);
}

const REMOVING_INFIX = '.removing-';

async function shrinkAndUnlink(file: string, stepBytes: number, pauseMs: number, onStep?: (bytesLeft: number) => void): Promise<void> {
  let handle: fs.promises.FileHandle | null = null;
  try {
    handle = await fs.promises.open(file, 'r+');
    let size = (await handle.stat()).size;
    while (size > stepBytes) {
      size -= stepBytes;
      await handle.truncate(size);
      await handle.datasync();
      onStep?.(size);
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  } catch {
    // Not writable, or a failed step: the unlink below decides.
  } finally {
    await handle?.close().catch(() => undefined);
  }
  await fs.promises.rm(file, { force: true });
}

/** Where a follower writes the snapshot it is seeding from. */
export function seedFileFor(dbFile: string): string {
  return `${dbFile}.snapshot.tmp`;
}

/** Where the database a snapshot replaced waits for its (paced) removal. */
export function replacedFileFor(dbFile: string): string {
  return `${dbFile}.replaced`;
}

/** The directory where a leader keeps the snapshots it makes and serves. */
export function servedSnapshotsDirFor(dbFile: string): string {
  return path.join(path.dirname(dbFile), 'snapshots');
}

/**
 * What an interrupted seed, snapshot or removal leaves in a replica's data directory, for the
 * replica to remove at start: the follower's half-written snapshot, the database a snapshot
 * replaced, the snapshots a leader was serving, and files a removal had renamed aside (kill -9
 * leaves them; nothing else ever would).
 */
export function leftoverFiles(dbFile: string): string[] {
  const dir = path.dirname(dbFile);
  const base = path.basename(dbFile);
  const found = [seedFileFor(dbFile), replacedFileFor(dbFile)].filter((f) => fs.existsSync(f));
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    if (name.startsWith(`${base}.`) && name.includes(REMOVING_INFIX)) found.push(path.join(dir, name));
  }
  const snapshots = servedSnapshotsDirFor(dbFile);
  if (fs.existsSync(snapshots)) for (const name of fs.readdirSync(snapshots)) found.push(path.join(snapshots, name));
  return found;
}

/**
 * fsync of a directory: makes a rename or a new name in it durable (a file's own fsync does not
 * cover the directory entry that names it). Where a directory cannot be opened for it (not
 * POSIX), nothing to do.
 */
export function syncDirectory(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
