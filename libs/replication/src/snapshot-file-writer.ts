/**
 * Writes a snapshot file as chunks arrive, without blocking the event loop: writes and fdatasyncs
 * run on libuv's thread pool, one at a time, in the order given, while the caller goes on
 * receiving. The file is flushed every {@link SNAPSHOT_FSYNC_EVERY_BYTES} as it is written: one
 * fsync of the whole file at the end would stall every other fsync on the same disk (the leader's
 * commits, if it shares it) for seconds.
 */
import * as fs from 'node:fs';

/**
 * A seeding follower flushes the snapshot file to disk every this many bytes: as little dirty data
 * as the leader's snapshot worker leaves (SNAPSHOT_FLUSH_EVERY_BYTES, same measurement), for when
 * both share a disk.
 */
export const SNAPSHOT_FSYNC_EVERY_BYTES = 2 * 1024 * 1024;
/** Bytes accepted but not yet written at most; `write` waits beyond this (memory bound). */
export const SNAPSHOT_WRITE_QUEUE_BYTES_MAX = 16 * 1024 * 1024;

export class SnapshotFileWriter {
  private tail: Promise<void> = Promise.resolve();
  private failure: Error | null = null;
  private queuedBytes = 0;
  private unflushedBytes = 0;
  private drained: (() => void) | null = null;
  private closed = false;

  private constructor(
    private readonly fd: number,
    readonly file: string,
  ) {}

  /** Creates (or truncates) `file`. */
  static create(file: string): SnapshotFileWriter {
    return new SnapshotFileWriter(fs.openSync(file, 'w'), file);
  }

  /**
   * Queues `data` for `position`; resolves once it is queued (at once, unless more than
   * {@link SNAPSHOT_WRITE_QUEUE_BYTES_MAX} wait). Throws the first failed write or flush. The
   * caller must not change `data` afterwards.
   */
  async write(position: number, data: Uint8Array): Promise<void> {
    if (this.failure) throw this.failure;
    while (this.queuedBytes > SNAPSHOT_WRITE_QUEUE_BYTES_MAX && !this.failure) {
      await new Promise<void>((r) => (this.drained = r));
    }
    if (this.failure) throw this.failure;
    this.queuedBytes += data.length;
    this.tail = this.tail.then(async () => {
      if (this.failure) return;
      try {
        await writeAll(this.fd, data, position);
        this.unflushedBytes += data.length;
        if (this.unflushedBytes >= SNAPSHOT_FSYNC_EVERY_BYTES) {
          this.unflushedBytes = 0;
          await new Promise<void>((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
        }
      } catch (err) {
        this.failure = new Error(`write snapshot file ${this.file} at ${position}: ${(err as Error).message}`, { cause: err });
      } finally {
        this.queuedBytes -= data.length;
        const d = this.drained;
        this.drained = null;
        d?.();
      }
    });
  }

  /** Waits for every queued write, fsyncs the file and closes it. Throws the first failure. */
  async finish(): Promise<void> {
    await this.tail;
    try {
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve, reject) => fs.fsync(this.fd, (err) => (err ? reject(err) : resolve())));
    } finally {
      this.close();
    }
  }

  /** Lets queued writes end and closes the file; never throws (the seed failed anyway). */
  async abandon(): Promise<void> {
    this.failure ??= new Error('abandoned');
    await this.tail;
    this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}

function writeAll(fd: number, data: Uint8Array, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (offset: number) =>
      fs.write(fd, data, offset, data.length - offset, position + offset, (err, written) => {
        if (err) return reject(err);
        if (offset + written < data.length) return step(offset + written);
        resolve();
      });
    step(0);
  });
}
