/**
 * One fdatasync at a time, off the event loop. Asked again while one runs, it runs once more when
 * that one returns (covering everything committed meanwhile): flushes coalesce under load and never
 * queue up. A failed flush is fatal to the caller (the kernel may have dropped the pages it could
 * not write, so nothing may be reported flushed).
 */
export class WalFlusher {
  private running = false;
  private again = false;

  constructor(
    /** Flushes and resolves with the LSN now durable (Store.syncWalAsync). */
    private readonly flushOnce: () => Promise<number>,
    private readonly onFlushed: (lsn: number) => void,
    private readonly onError: (err: Error) => void,
    /** False once the owner stopped: a late result is dropped. */
    private readonly active: () => boolean,
  ) {}

  request(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    this.flushOnce().then(
      (lsn) => {
        this.running = false;
        if (!this.active()) return;
        this.onFlushed(lsn);
        if (this.again) {
          this.again = false;
          this.request();
        }
      },
      (err: Error) => {
        this.running = false;
        this.onError(err);
      },
    );
  }
}
