/**
 * Batches the leader's change stream for followers nobody is waiting for. A group committed after
 * a quiet spell (no commit for `intervalMs`) goes at once, so a lightly loaded cluster's lag does
 * not grow; under load a group is held, and everything committed in the next `intervalMs` goes with
 * it in one message. A group some write waits on (a sync follower must flush it) goes at once,
 * taking whatever was held with it, so order is kept and no acknowledgement waits for the timer.
 *
 * Why: every message on the stream costs each follower a wake-up, a decode, a SQLite transaction
 * and an ack, and nats-server a delivery per follower. Under load the leader commits a group every
 * few hundred µs; measured at 16 and 64 clients on 2 cores, holding async messages for 2 ms raised
 * the 2-follower throughput by 6–16% (docs/benchmarks.md, "Change-stream batching"). The price is
 * up to `intervalMs` more lag on async followers, and so that much more to lose in an async failover.
 *
 * Rejected: holding only until `intervalMs` after the last message (so the first group after a
 * message-free interval goes at once): at 16 clients the groups come 2–3 ms apart, most went alone,
 * and the gain halved. Publishing after the leader's own fdatasync (as a walsender sends only flushed WAL):
 * batches as well only while flushes are slow, adds the flush to the lag of every entry, and
 * measured less (4,585 vs 4,904 writes/s at 16 clients).
 */
import type { Clock, Timer } from '@flotilla/logging';

export class StreamBatcher<T> {
  private held: T[] = [];
  private timer: Timer | null = null;
  private lastAddMono = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly clock: Clock,
    /** How long a group may be held under load (and the quiet spell that lets one go at once); 0 holds nothing. */
    private readonly intervalMs: number,
    private readonly send: (items: T[]) => void,
  ) {
    if (!Number.isFinite(intervalMs) || intervalMs < 0) throw new RangeError(`intervalMs ${intervalMs}`);
  }

  /**
   * Queues `items` (one group commit) after everything added before. `urgent`: send now, with
   * anything held; otherwise now if the previous group is `intervalMs` old, else `intervalMs` after
   * the first group held.
   */
  add(items: T[], urgent: boolean): void {
    const now = this.clock.monotonic();
    const quiet = now - this.lastAddMono >= this.intervalMs;
    this.lastAddMono = now;
    for (const it of items) this.held.push(it);
    // Quiet implies no timer: one is armed only by a group less than intervalMs after the previous,
    // and fires intervalMs later. With intervalMs 0 every group is quiet.
    if (urgent || quiet) return this.flush();
    if (this.timer || this.held.length === 0) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.flush();
    }, this.intervalMs);
  }

  /** Sends everything held now. */
  flush(): void {
    this.timer?.cancel();
    this.timer = null;
    if (this.held.length === 0) return;
    const items = this.held;
    this.held = [];
    this.send(items);
  }

  /** Items waiting for the timer. */
  get heldCount(): number {
    return this.held.length;
  }
}
