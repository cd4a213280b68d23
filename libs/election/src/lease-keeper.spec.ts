import { FakeClock, MemoryLogger } from '@flotilla/logging';
import { LeaseKeeper, LeadershipView } from './lease-keeper';
import { MemoryLeaseStore } from './memory-lease';

const TTL_MS = 1500;
const RENEW_MS = 300;

/**
 * A keeper of `node` on the shared store: `takeExpired` as the monitors use it, a wall clock
 * `aheadMs` ahead of the store's (the writers'), and the epoch its data knows.
 */
function keeper(store: MemoryLeaseStore, clock: FakeClock, node: string, takeExpired?: boolean, aheadMs = 0, knownEpoch: () => number = () => 0) {
  const views: LeadershipView[] = [];
  const k = new LeaseKeeper(
    store.leaser(),
    clock.offsetBy(aheadMs),
    new MemoryLogger(),
    { node, ttlMs: TTL_MS, renewMs: RENEW_MS, safetyMarginMs: 300, knownEpoch, ...(takeExpired === undefined ? {} : { takeExpired }) },
    (v) => views.push(v),
  );
  return { k, views };
}

/** The two monitors' keepers on one lease, started in order (monitor-0 takes it, epoch 1). */
async function twoMonitors(store: MemoryLeaseStore, clock: FakeClock) {
  const a = keeper(store, clock, 'monitor-0', true);
  const b = keeper(store, clock, 'monitor-1', true);
  await a.k.start();
  await b.k.start();
  return { a, b };
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
    const { a, b } = await twoMonitors(store, clock);
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

describe('LeaseKeeper and a free lease', () => {
  it('at the first start of a cluster the first replica takes the absent lease, at epoch 1', async () => {
    const clock = new FakeClock();
    const store = new MemoryLeaseStore(clock);
    const a = keeper(store, clock, 'replica-0');
    const b = keeper(store, clock, 'replica-1');
    await a.k.start();
    await b.k.start();
    expect(store.record).toMatchObject({ holder: 'replica-0', epoch: 1 });
    expect(b.k.leadership).toEqual({ leader: 'replica-0', epoch: 1, isLeader: false });
    a.k.stop();
    b.k.stop();
  });

  it('once a leader existed, a free lease (released or deleted) is left for the monitor: the leader stops counting itself valid, nobody grabs it', async () => {
    const clock = new FakeClock();
    const store = new MemoryLeaseStore(clock);
    store.cas(null, { holder: 'replica-0', epoch: 7, ttlMs: TTL_MS });
    const { k: leader } = keeper(store, clock, 'replica-0', undefined, 0, () => 7);
    // A lagging follower whose data knows only epoch 5, and an empty newcomer.
    const { k: lagging } = keeper(store, clock, 'replica-1', undefined, 0, () => 5);
    await leader.start(); // ours from before a restart: re-taken at epoch 8
    await lagging.start();
    expect(store.record).toMatchObject({ holder: 'replica-0', epoch: 8 });
    expect(leader.isValidLeader()).toBe(true);
    store.delete(); // kubectl delete lease
    await advance(clock, 3 * TTL_MS);
    expect(store.record).toBeNull();
    expect(leader.isValidLeader()).toBe(false);
    expect(leader.leadership).toEqual({ leader: null, epoch: 8, isLeader: false });
    expect(lagging.leadership).toEqual({ leader: null, epoch: 8, isLeader: false });
    // The monitor gives it to replica-0 at epoch 9: it takes it up.
    store.cas(null, { holder: 'replica-0', epoch: 9, ttlMs: TTL_MS });
    await settle();
    expect(leader.leadership).toEqual({ leader: 'replica-0', epoch: 9, isLeader: true });
    expect(leader.isValidLeader()).toBe(true);
    leader.stop();
    lagging.stop();
  });

  it('a newcomer that never saw a lease but joins a cluster that led before (its data knows an epoch) leaves a free lease alone', async () => {
    const clock = new FakeClock();
    const store = new MemoryLeaseStore(clock);
    const { k } = keeper(store, clock, 'replica-2', undefined, 0, () => 3);
    await k.start();
    await advance(clock, 2 * TTL_MS);
    expect(store.record).toBeNull();
    expect(k.leadership.isLeader).toBe(false);
    k.stop();
  });

  it('with takeExpired (monitors) a deleted lease is taken again above every epoch seen, never reusing one', async () => {
    const clock = new FakeClock();
    const store = new MemoryLeaseStore(clock);
    const { a, b } = await twoMonitors(store, clock);
    a.k.stop(); // monitor-0 dies; monitor-1 takes over at epoch 2
    await advance(clock, 2 * TTL_MS);
    expect(store.record).toMatchObject({ holder: 'monitor-1', epoch: 2 });
    store.delete();
    await advance(clock, 2 * RENEW_MS);
    expect(store.record).toMatchObject({ holder: 'monitor-1', epoch: 3 });
    b.k.stop();
  });
});

describe('LeaseKeeper after its data was lost', () => {
  it('a replica restarted with an empty store does not lead with the lease its earlier incarnation held, but takes one the monitor hands it', async () => {
    const clock = new FakeClock();
    const store = new MemoryLeaseStore(clock);
    const held = store.cas(null, { holder: 'replica-0', epoch: 4, ttlMs: TTL_MS });
    let knownEpoch = 0; // a new, empty volume
    const { k } = keeper(store, clock, 'replica-0', undefined, 0, () => knownEpoch);
    await k.start();
    await advance(clock, 2 * TTL_MS);
    expect(store.record).toEqual(held); // neither renewed nor re-taken
    expect(k.leadership.isLeader).toBe(false);
    // The monitor, finding nobody better, hands it a newer epoch: that one it takes up.
    store.cas(held, { holder: 'replica-0', epoch: 5, ttlMs: TTL_MS });
    await settle();
    expect(k.leadership).toEqual({ leader: 'replica-0', epoch: 5, isLeader: true });
    knownEpoch = 5;
    k.stop();
  });
});

describe('LeaseKeeper for the monitors\' lease', () => {
  it('a lone monitor restarted under its name takes back the lease it held (it has no data to lose)', async () => {
    const clock = new FakeClock();
    const store = new MemoryLeaseStore(clock);
    const first = keeper(store, clock, 'monitor-0', true);
    await first.k.start();
    expect(store.record).toMatchObject({ holder: 'monitor-0', epoch: 1 });
    first.k.stop(); // killed: no release
    const again = keeper(store, clock, 'monitor-0', true);
    await again.k.start();
    await advance(clock, 2 * RENEW_MS);
    expect(again.k.isValidLeader()).toBe(true);
    expect(store.record?.holder).toBe('monitor-0');
    again.k.stop();
  });
});

describe('LeaseKeeper mayHold', () => {
  it('a monitor that cannot do the job (cut off from NATS) stops renewing, and the peer takes the lease', async () => {
    const clock = new FakeClock();
    const store = new MemoryLeaseStore(clock);
    let connected = true;
    const views: LeadershipView[] = [];
    const a = new LeaseKeeper(store.leaser(), clock, new MemoryLogger(), { node: 'monitor-0', ttlMs: TTL_MS, renewMs: RENEW_MS, safetyMarginMs: 300, knownEpoch: () => 0, takeExpired: true, mayHold: () => connected }, (v) => views.push(v));
    await a.start();
    const b = keeper(store, clock, 'monitor-1', true);
    await b.k.start();
    await advance(clock, 2 * TTL_MS);
    expect(store.record).toMatchObject({ holder: 'monitor-0', epoch: 1 });
    connected = false;
    await advance(clock, TTL_MS + 2 * RENEW_MS);
    expect(store.record).toMatchObject({ holder: 'monitor-1', epoch: 2 });
    expect(a.isValidLeader()).toBe(false);
    await advance(clock, 2 * TTL_MS); // and it does not take it back while it cannot hold it
    expect(store.record).toMatchObject({ holder: 'monitor-1', epoch: 2 });
    a.stop();
    b.k.stop();
  });
});
