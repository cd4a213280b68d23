/**
 * Leader election behind one small interface, so the election logic (who may lead, fencing
 * deadlines, failover choice) is independent of where the lease lives: a NATS JetStream KV entry
 * locally, a Kubernetes `coordination.k8s.io/v1` Lease in a cluster, or memory in unit tests.
 *
 * The whole contract is a compare-and-swap on an opaque revision. Acquire, renew, hand over and
 * release are all {@link Leaser.compareAndSwap} with different next values.
 */

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
