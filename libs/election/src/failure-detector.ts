/**
 * Failure detection from heartbeats: per node, the last heartbeat and when it arrived (receiver's
 * monotonic clock; the sender's wall clock is never trusted for liveness). A node is healthy while
 * its last heartbeat is younger than `failureTimeoutMs`, dead after that.
 *
 * It also remembers when each node last heartbeated *as leader*, because "the leader is alive"
 * means "it still heartbeats in the leader role": a restarted old leader that heartbeats as
 * `starting` is alive as a process but is not leading.
 *
 * Plain TypeScript, no I/O: the caller decodes heartbeats at the boundary and feeds them in.
 */
import type { Clock } from '@flotilla/logging';
import type { Heartbeat } from '@flotilla/protocol';

/** One node as the detector sees it now. */
export interface NodeHealth {
  hb: Heartbeat;
  healthy: boolean;
  /** Milliseconds since its last heartbeat arrived. */
  silentForMs: number;
}

interface Seen {
  hb: Heartbeat;
  /** Monotonic receive time of the last heartbeat. */
  at: number;
  /** Monotonic receive time and epoch of the last heartbeat with role `leader`. */
  leaderAt?: number;
  leaderEpoch?: number;
}

export class FailureDetector {
  private readonly seen = new Map<string, Seen>();

  /**
   * @param failureTimeoutMs a node whose last heartbeat is at least this old is dead (> 0)
   * @param forgetAfterMs a node silent this long is dropped (scaled-down pods); >= failureTimeoutMs
   */
  constructor(
    private readonly clock: Clock,
    readonly failureTimeoutMs: number,
    readonly forgetAfterMs: number = Math.max(failureTimeoutMs, 5 * 60 * 1000),
  ) {
    if (!(failureTimeoutMs > 0)) throw new RangeError(`failureTimeoutMs must be > 0, got ${failureTimeoutMs}`);
    if (!(forgetAfterMs >= failureTimeoutMs)) throw new RangeError(`forgetAfterMs (${forgetAfterMs}) must be >= failureTimeoutMs (${failureTimeoutMs})`);
  }

  /** Records a decoded, validated heartbeat; the newest one of a node replaces the previous one. */
  observe(hb: Heartbeat): void {
    const at = this.clock.monotonic();
    const previous = this.seen.get(hb.node);
    const entry: Seen = { hb, at, leaderAt: previous?.leaderAt, leaderEpoch: previous?.leaderEpoch };
    // A leader that says it cannot renew its lease refuses writes: for failover it is as good as
    // silent (it may be cut off from the lease store while still on NATS).
    if (hb.role === 'leader' && hb.leaseValid !== false) {
      entry.leaderAt = at;
      entry.leaderEpoch = hb.epoch;
    }
    this.seen.set(hb.node, entry);
  }

  /** The last heartbeat of `node`, healthy or not (undefined if never seen or forgotten). */
  lastHeartbeat(node: string): Heartbeat | undefined {
    return this.seen.get(node)?.hb;
  }

  /** Milliseconds since the last heartbeat of `node`; Infinity if it was never seen. */
  silentForMs(node: string): number {
    const s = this.seen.get(node);
    return s ? this.clock.monotonic() - s.at : Infinity;
  }

  isHealthy(node: string): boolean {
    return this.silentForMs(node) < this.failureTimeoutMs;
  }

  /**
   * Milliseconds since `node` last heartbeated in the leader role at epoch `minEpoch` or later;
   * Infinity if it never did.
   */
  silentAsLeaderForMs(node: string, minEpoch = 0): number {
    const s = this.seen.get(node);
    if (!s || s.leaderAt === undefined || (s.leaderEpoch ?? -1) < minEpoch) return Infinity;
    return this.clock.monotonic() - s.leaderAt;
  }

  /** True while `node` heartbeats as leader (epoch >= minEpoch) within failureTimeoutMs. */
  isLeaderAlive(node: string, minEpoch = 0): boolean {
    return this.silentAsLeaderForMs(node, minEpoch) < this.failureTimeoutMs;
  }

  /**
   * Time in which no heartbeat could arrive (this process was cut off from them) does not count as
   * anyone's silence: every receive time moves forward by `ms`.
   */
  excludeGap(ms: number): void {
    if (!(ms > 0)) return;
    const now = this.clock.monotonic();
    for (const s of this.seen.values()) {
      s.at = Math.min(now, s.at + ms);
      if (s.leaderAt !== undefined) s.leaderAt = Math.min(now, s.leaderAt + ms);
    }
  }

  /** Every known node sorted by name, with health computed now. Forgets long-silent nodes. */
  nodes(): NodeHealth[] {
    const now = this.clock.monotonic();
    for (const [name, s] of this.seen) if (now - s.at >= this.forgetAfterMs) this.seen.delete(name);
    return [...this.seen.values()]
      .sort((a, b) => (a.hb.node < b.hb.node ? -1 : a.hb.node > b.hb.node ? 1 : 0))
      .map((s) => ({ hb: s.hb, healthy: now - s.at < this.failureTimeoutMs, silentForMs: now - s.at }));
  }
}
