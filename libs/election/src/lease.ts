/**
 * Leader election behind one small interface, so the election logic (who may lead, fencing
 * deadlines, failover choice) is independent of where the lease lives: a NATS JetStream KV entry
 * locally, a Kubernetes `coordination.k8s.io/v1` Lease in a cluster, or memory in unit tests.
 *
 * The whole contract is a compare-and-swap on an opaque revision. Acquire, renew, hand over and
 * release are all {@link Leaser.compareAndSwap} with different next values.
 */
import type { Clock } from '@flotilla/logging';

/** The lease as stored. */
export interface LeaseRecord {
  /** Node that holds the lease; null when released. */
  holder: string | null;
  /** Leadership term; +1 on every change of holder (Kubernetes: leaseTransitions). */
  epoch: number;
  /** Wall-clock time of the last acquire/renew, ms since the Unix epoch. */
  renewedAtMs: number;
  /** How long after renewedAtMs the lease is valid. */
  ttlMs: number;
  /** Opaque compare-and-swap token of the backend (KV revision, resourceVersion). */
  revision: string;
}

/** What a writer proposes; the backend stamps renewedAtMs and revision. */
export interface LeaseProposal {
  holder: string | null;
  epoch: number;
  ttlMs: number;
}

/** The stored lease changed under us: someone else wrote it since `expected`. */
export class LeaseConflictError extends Error {
  override readonly name = 'LeaseConflictError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The backend could not be reached or answered with an error other than a conflict. */
export class LeaseUnavailableError extends Error {
  override readonly name = 'LeaseUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface LeaseWatch {
  stop(): void;
}

export interface Leaser {
  /** Human-readable backend name for logs (`nats-kv`, `kubernetes`, `memory`). */
  readonly kind: string;
  /** The stored lease, or null when none has ever been written. */
  read(): Promise<LeaseRecord | null>;
  /**
   * Writes `next` if and only if the stored lease is still `expected` (null: does not exist yet).
   * Returns the stored record. Throws {@link LeaseConflictError} when it changed,
   * {@link LeaseUnavailableError} when the backend cannot be reached.
   */
  compareAndSwap(expected: LeaseRecord | null, next: LeaseProposal): Promise<LeaseRecord>;
  /** Calls `onChange` with every new stored value (and at least every `resyncMs`), until stopped. */
  watch(onChange: (record: LeaseRecord | null) => void): LeaseWatch;
  close(): Promise<void>;
}

/** True when the lease has run out by the reader's wall clock. */
export function isLeaseExpired(record: LeaseRecord, nowWallMs: number): boolean {
  return record.holder === null || nowWallMs > record.renewedAtMs + record.ttlMs;
}

/**
 * A reader's view of whether a lease has run out, safe against clock offsets between hosts.
 *
 * `renewedAtMs` is stamped by the writer's wall clock. A reader whose clock runs ahead of the
 * writer's by more than the holder's safety margin would see a live lease expired and act while
 * the holder still counts itself valid. So, as client-go's leader election does, the reader also
 * times the record itself: it is expired only when its revision has not changed for `ttlMs` on
 * the reader's monotonic clock since the reader first saw it, and (as before) by the wall clock.
 * The reader sees a write after it happened, and the holder times its validity from before it
 * sent the write, so the reader's expiry always comes after the holder's, whatever the clocks say.
 * The cost: expiry comes later by the watch's delivery delay (milliseconds), and a reader that just
 * started waits one TTL from its first read.
 */
export class ObservedLease {
  private current: LeaseRecord | null = null;
  private seenAtMono = 0;
  /** TTL of the holder a free lease was last seen with (0: none, or it never had one). */
  private freedFromTtlMs = 0;

  constructor(private readonly clock: Pick<Clock, 'now' | 'monotonic'>) {}

  /** The record last observed (null when none, or none written yet). */
  get record(): LeaseRecord | null {
    return this.current;
  }

  /** Takes a record as read, watched or written; a new revision restarts its timing. */
  observe(record: LeaseRecord | null): void {
    const changed = record === null || this.current === null || record.revision !== this.current.revision;
    if (changed) {
      // A lease that goes free (deleted, released) while someone held it: that holder may count
      // itself valid for up to its TTL after its last renewal, which came before this moment.
      if ((record === null || record.holder === null) && this.current !== null && this.current.holder !== null) this.freedFromTtlMs = this.current.ttlMs;
      else if (record !== null && record.holder !== null) this.freedFromTtlMs = 0;
      if (record !== null || this.current !== null) this.seenAtMono = this.clock.monotonic();
    }
    this.current = record;
  }

  /**
   * True when the observed lease is free, or has run out by both clocks. A lease seen going free
   * from a holder counts as free only once that holder's TTL has passed since: it may not know yet.
   */
  expired(): boolean {
    const r = this.current;
    if (r === null || r.holder === null) return this.clock.monotonic() - this.seenAtMono > this.freedFromTtlMs;
    return isLeaseExpired(r, this.clock.now()) && this.clock.monotonic() - this.seenAtMono > r.ttlMs;
  }

  /** Milliseconds until {@link expired} turns true (0 once it has; by the later of both clocks). */
  remainingMs(): number {
    const r = this.current;
    if (r === null || r.holder === null) return 0;
    const byWall = r.renewedAtMs + r.ttlMs - this.clock.now();
    const byObservation = this.seenAtMono + r.ttlMs - this.clock.monotonic();
    return Math.max(0, byWall, byObservation);
  }
}
