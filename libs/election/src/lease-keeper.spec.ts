import { FakeClock, MemoryLogger } from '@flotilla/logging';
import { LeaseKeeper, LeadershipView } from './lease-keeper';
import { MemoryLeaseStore } from './memory-lease';

const TTL_MS = 1500;
const RENEW_MS = 300;

/** A keeper on a host whose wall clock is `aheadMs` ahead of the store's (the writers'). */
function keeper(store: MemoryLeaseStore, clock: FakeClock, node: string, takeExpired?: boolean, aheadMs = 0) {
  const views: LeadershipView[] = [];
  const k = new LeaseKeeper(
    store.leaser(),
    clock.offsetBy(aheadMs),
    new MemoryLogger(),
    { node, ttlMs: TTL_MS, renewMs: RENEW_MS, safetyMarginMs: 300, knownEpoch: () => 0, ...(takeExpired === undefined ? {} : { takeExpired }) },
    (v) => views.push(v),
  );
  return { k, views };
}

/** Lets the promise chains started by timers settle. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

async function advance(clock: FakeClock, ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 50) {
    clock.advance(50);
    await settle();
  }
}

describe('LeaseKeeper takeExpired', () => {
  it('by default never takes a lease another holder let run out (that is the monitor\'s decision)', async () => {
    const clock = new FakeClock();
    const store = new MemoryLeaseStore(clock);
    store.cas(null, { holder: 'replica-0', epoch: 1, ttlMs: TTL_MS });
    const { k } = keeper(store, clock, 'replica-1');
    await k.start();
    await advance(clock, 3 * TTL_MS);
    expect(store.record).toMatchObject({ holder: 'replica-0', epoch: 1 });
    expect(k.leadership.isLeader).toBe(false);
    k.stop();
  });

  it('with takeExpired, a standby takes the lease once its holder stops renewing, with epoch + 1', async () => {
    const clock = new FakeClock();
    const store = new MemoryLeaseStore(clock);
    const a = keeper(store, clock, 'monitor-0', true);
    const b = keeper(store, clock, 'monitor-1', true);
    await a.k.start();
    await b.k.start();
    await advance(clock, 2 * TTL_MS);
    expect(store.record).toMatchObject({ holder: 'monitor-0', epoch: 1 });
    expect(b.k.leadership).toEqual({ leader: 'monitor-0', epoch: 1, isLeader: false });
    a.k.stop(); // dies: no more renewals
    await advance(clock, TTL_MS - RENEW_MS);
    expect(store.record?.holder).toBe('monitor-0');
    await advance(clock, 2 * RENEW_MS);
    expect(store.record).toMatchObject({ holder: 'monitor-1', epoch: 2 });
    expect(b.k.isValidLeader()).toBe(true);
    b.k.stop();
  });
});

describe('LeaseKeeper and stale lease records', () => {
  it('a leader that re-took its lease after a restart ignores the old record a late watch event delivers, and keeps renewing', async () => {
    const clock = new FakeClock();
    const store = new MemoryLeaseStore(clock);
    const before = store.cas(null, { holder: 'replica-2', epoch: 1, ttlMs: TTL_MS });
    // A leaser whose watch the test drives, as a NATS KV watch that delivers its initial value late.
    const inner = store.leaser();
    let deliver: (r: typeof before | null) => void = () => undefined;
    const leaser = { ...inner, watch: (onChange: (r: typeof before | null) => void) => ((deliver = onChange), { stop: () => undefined }) };
    const views: LeadershipView[] = [];
    const k = new LeaseKeeper(leaser, clock, new MemoryLogger(), { node: 'replica-2', ttlMs: TTL_MS, renewMs: RENEW_MS, safetyMarginMs: 300, knownEpoch: () => 1 }, (v) => views.push(v));
    await k.start();
    expect(store.record).toMatchObject({ holder: 'replica-2', epoch: 2 });
    deliver(before);
    await settle();
    await advance(clock, 3 * TTL_MS);
    expect(store.record).toMatchObject({ holder: 'replica-2', epoch: 2 });
    expect(store.record!.renewedAtMs).toBeGreaterThan(clock.now() - RENEW_MS - 50);
    expect(k.isValidLeader()).toBe(true);
    expect(views).toEqual([{ leader: 'replica-2', epoch: 2, isLeader: true }]);
    k.stop();
  });
});

describe('LeaseKeeper and clock offsets between hosts', () => {
  it("a node handed the lease, its wall clock behind the writer's, times its validity from its own renewal", async () => {
    const clock = new FakeClock();
    const store = new MemoryLeaseStore(clock);
    const first = store.cas(null, { holder: 'replica-0', epoch: 1, ttlMs: TTL_MS });
    const { k, views } = keeper(store, clock, 'replica-1', undefined, -10_000);
    await k.start();
    expect(k.leadership).toEqual({ leader: 'replica-0', epoch: 1, isLeader: false });
    const handed = store.cas(first, { holder: 'replica-1', epoch: 2, ttlMs: TTL_MS }); // the monitor's failover
    await settle();
    // Going by the timestamp it would count itself valid for 10 s more than anyone else waits.
    expect(views[views.length - 1]).toEqual({ leader: 'replica-1', epoch: 2, isLeader: true });
    expect(store.record).toMatchObject({ holder: 'replica-1', epoch: 2 });
    expect(store.record!.revision).not.toBe(handed.revision); // renewed by replica-1 itself
    expect(k.validForMs()).toBe(TTL_MS - 300);
    k.stop(); // no more renewals: valid until TTL - safety margin after its own write
    await advance(clock, TTL_MS - 300 - 50);
    expect(k.isValidLeader()).toBe(true);
    await advance(clock, 100);
    expect(k.isValidLeader()).toBe(false);
  });

  it("with takeExpired, a standby whose wall clock runs ahead never takes a lease that is being renewed", async () => {
    const clock = new FakeClock();
    const store = new MemoryLeaseStore(clock);
    const a = keeper(store, clock, 'monitor-0', true);
    await a.k.start();
    // 10 s ahead: by its timestamp, every renewal of monitor-0 has run out already.
    const b = keeper(store, clock, 'monitor-1', true, 10_000);
    await b.k.start();
    await advance(clock, 3 * TTL_MS);
    expect(store.record).toMatchObject({ holder: 'monitor-0', epoch: 1 });
    expect(b.k.leadership.isLeader).toBe(false);
    a.k.stop();
    await advance(clock, TTL_MS - RENEW_MS);
    expect(store.record?.holder).toBe('monitor-0');
    await advance(clock, 2 * RENEW_MS);
    expect(store.record).toMatchObject({ holder: 'monitor-1', epoch: 2 });
    b.k.stop();
  });
});
