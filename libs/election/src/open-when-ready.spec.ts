import { MemoryLogger } from '@flotilla/logging';
import { leaseStoreRetry, OPEN_RETRY_MAX_MS, OPEN_RETRY_MIN_MS, openWhenReady } from './nats-kv-lease';

describe('openWhenReady', () => {
  it('returns at once when the store answers', async () => {
    const slept: number[] = [];
    await expect(openWhenReady(async () => 'kv', () => undefined, async (ms) => void slept.push(ms))).resolves.toBe('kv');
    expect(slept).toEqual([]);
  });

  it('retries with a doubling pause, capped, until the store answers; says why each time', async () => {
    let calls = 0;
    const slept: number[] = [];
    const reasons: string[] = [];
    const open = async () => {
      if (++calls <= 7) throw new Error(`JetStream not enabled (${calls})`);
      return 'kv';
    };
    await expect(openWhenReady(open, (err) => reasons.push(err.message), async (ms) => void slept.push(ms))).resolves.toBe('kv');
    expect(calls).toBe(8);
    expect(slept).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000]);
    expect(slept[0]).toBe(OPEN_RETRY_MIN_MS);
    expect(Math.max(...slept)).toBe(OPEN_RETRY_MAX_MS);
    expect(reasons).toEqual(Array.from({ length: 7 }, (_, i) => `JetStream not enabled (${i + 1})`));
  });

  it('leaseStoreRetry logs a warn line with the reason and the pause', () => {
    const log = new MemoryLogger({});
    leaseStoreRetry(log)(new Error('timeout'), 500);
    expect(log.lines).toEqual([{ level: 'warn', msg: 'lease backend not available yet; retrying', fields: { backend: 'nats-kv', err: 'timeout', retryMs: 500 } }]);
  });
});
