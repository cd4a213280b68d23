/**
 * {@link Leaser} on a NATS JetStream KV bucket: one key per lease, compare-and-swap on the KV
 * revision (`create` when absent, `update(key, value, revision)` otherwise). Works on
 * nats-server 2.9 (no per-key TTL is needed: validity is in the value, as in a Kubernetes Lease).
 */
import type { KV, NatsConnection } from 'nats';
import type { Logger } from '@flotilla/logging';
import { LeaseConflictError, LeaseProposal, LeaseRecord, Leaser, LeaseUnavailableError, LeaseWatch } from './lease';

/** First and longest pause between attempts of {@link openWhenReady}. */
export const OPEN_RETRY_MIN_MS = 250;
export const OPEN_RETRY_MAX_MS = 5000;

/**
 * Opens a lease store at start, retrying (250 ms doubling to 5 s) until it answers. NATS can
 * answer before JetStream does (a server recovering its streams, a slow disk); a process that
 * exited instead would be restarted with a growing back-off (a pod's CrashLoopBackOff reaches
 * minutes) for a state that passes by itself. `onRetry` says why (a log line).
 */
export async function openWhenReady<T>(
  open: () => Promise<T>,
  onRetry: (err: Error, retryMs: number) => void,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await open();
    } catch (err) {
      const retryMs = Math.min(OPEN_RETRY_MAX_MS, OPEN_RETRY_MIN_MS * 2 ** Math.min(attempt, 10));
      onRetry(err as Error, retryMs);
      await sleep(retryMs);
    }
  }
}

/** The `onRetry` of {@link openWhenReady} for a process's start: one warn line per failed attempt. */
export function leaseStoreRetry(log: Logger): (err: Error, retryMs: number) => void {
  return (err, retryMs) => log.warn('lease backend not available yet; retrying', { backend: 'nats-kv', err: err.message, retryMs });
}

/** Resync period of a watch: the callback sees the current value at least this often. */
const WATCH_RESYNC_MS = 1000;

interface StoredLease {
  holder: string | null;
  epoch: number;
  renewedAtMs: number;
  ttlMs: number;
}

export class NatsKvLeaser implements Leaser {
  readonly kind = 'nats-kv';
  private constructor(
    private readonly kv: KV,
    private readonly key: string,
    private readonly now: () => number,
  ) {}

  /** Opens (creating if needed) bucket `bucket` and uses key `key` in it. */
  static async open(nc: NatsConnection, bucket: string, key: string, now: () => number = Date.now): Promise<NatsKvLeaser> {
    try {
      const kv = await nc.jetstream().views.kv(bucket, { history: 1 });
      return new NatsKvLeaser(kv, key, now);
    } catch (err) {
      throw new LeaseUnavailableError(`open KV bucket ${bucket}: ${(err as Error).message}`, { cause: err });
    }
  }

  async read(): Promise<LeaseRecord | null> {
    let entry;
    try {
      entry = await this.kv.get(this.key);
    } catch (err) {
      throw new LeaseUnavailableError(`read lease ${this.key}: ${(err as Error).message}`, { cause: err });
    }
    if (!entry || entry.operation !== 'PUT' || entry.value.length === 0) return null;
    return toRecord(entry.json<StoredLease>(), entry.revision);
  }

  async compareAndSwap(expected: LeaseRecord | null, next: LeaseProposal): Promise<LeaseRecord> {
    const stored: StoredLease = { holder: next.holder, epoch: next.epoch, ttlMs: next.ttlMs, renewedAtMs: this.now() };
    const bytes = new TextEncoder().encode(JSON.stringify(stored));
    let revision: number;
    try {
      revision = expected === null ? await this.kv.create(this.key, bytes) : await this.kv.update(this.key, bytes, Number(expected.revision));
    } catch (err) {
      const msg = (err as Error).message ?? '';
      // JetStream answers a failed expectation with "wrong last sequence" (10071) or "key exists".
      if (/wrong last sequence|key exists|10071/i.test(msg)) {
        throw new LeaseConflictError(`lease ${this.key} changed since revision ${expected?.revision ?? 'none'}`, { cause: err });
      }
      throw new LeaseUnavailableError(`write lease ${this.key}: ${msg}`, { cause: err });
    }
    return toRecord(stored, revision);
  }

  watch(onChange: (record: LeaseRecord | null) => void): LeaseWatch {
    let stopped = false;
    let last = '';
    const emit = (r: LeaseRecord | null) => {
      if (stopped) return;
      const sig = r ? `${r.revision}` : 'none';
      if (sig !== last) {
        last = sig;
        onChange(r);
      }
    };
    // Push: a KV watch delivers each new revision at once. Pull: a periodic read covers a watch
    // that was lost with the connection.
    void (async () => {
      while (!stopped) {
        try {
          const iter = await this.kv.watch({ key: this.key });
          for await (const e of iter) {
            if (stopped) {
              iter.stop();
              break;
            }
            emit(e.operation === 'PUT' && e.value.length > 0 ? toRecord(e.json<StoredLease>(), e.revision) : null);
          }
        } catch {
          /* connection trouble: the resync below keeps us informed; retry the watch */
        }
        if (!stopped) await new Promise((r) => setTimeout(r, WATCH_RESYNC_MS));
      }
    })();
    const resync = setInterval(() => {
      this.read().then(emit, () => undefined);
    }, WATCH_RESYNC_MS);
    return {
      stop: () => {
        stopped = true;
        clearInterval(resync);
      },
    };
  }

  async close(): Promise<void> {}
}

function toRecord(s: StoredLease, revision: number): LeaseRecord {
  return { holder: s.holder, epoch: s.epoch, renewedAtMs: s.renewedAtMs, ttlMs: s.ttlMs, revision: String(revision) };
}
