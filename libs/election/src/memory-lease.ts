/** An in-memory {@link Leaser} shared by several holders in one process: for unit tests. */
import type { Clock } from '@flotilla/logging';
import { LeaseConflictError, LeaseProposal, LeaseRecord, Leaser, LeaseUnavailableError, LeaseWatch } from './lease';

export class MemoryLeaseStore {
  record: LeaseRecord | null = null;
  /** When true, every call fails as an unreachable backend would. */
  unreachable = false;
  /** Writes this many more, then fails as if the answer were lost (the write is stored all the same). */
  loseAnswers = 0;
  /** Fails this many more writes without storing them, as a request that timed out before it got there. */
  dropWrites = 0;
  private revision = 0;
  private watchers = new Set<(r: LeaseRecord | null) => void>();
  constructor(private readonly clock: Clock) {}

  leaser(): Leaser {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const store = this;
    return {
      kind: 'memory',
      async read() {
        if (store.unreachable) throw new LeaseUnavailableError('memory lease unreachable');
        return store.record ? { ...store.record } : null;
      },
      async compareAndSwap(expected, next) {
        if (store.dropWrites > 0) {
          store.dropWrites--;
          throw new LeaseUnavailableError('memory lease: the request timed out (not stored)');
        }
        const stored = store.cas(expected, next);
        if (store.loseAnswers > 0) {
          store.loseAnswers--;
          throw new LeaseUnavailableError('memory lease: the answer was lost');
        }
        return stored;
      },
      watch(onChange): LeaseWatch {
        store.watchers.add(onChange);
        return { stop: () => store.watchers.delete(onChange) };
      },
      async close() {},
    };
  }

  /** Removes the lease, as `kubectl delete lease` or a wiped KV store would; watchers see null. */
  delete(): void {
    this.record = null;
    for (const w of this.watchers) w(null);
  }

  cas(expected: LeaseRecord | null, next: LeaseProposal): LeaseRecord {
    if (this.unreachable) throw new LeaseUnavailableError('memory lease unreachable');
    const current = this.record;
    if ((expected === null) !== (current === null) || (expected && current && expected.revision !== current.revision)) {
      throw new LeaseConflictError(`lease changed: expected revision ${expected?.revision ?? 'none'}, found ${current?.revision ?? 'none'}`);
    }
    const stored = { ...next, renewedAtMs: this.clock.now(), revision: String(++this.revision) };
    this.record = stored;
    // What this write stored, even if a watcher wrote again meanwhile (as a real backend answers).
    for (const w of this.watchers) w({ ...stored });
    return { ...stored };
  }
}
