import { FakeClock, MemoryLogger } from '@flotilla/logging';
import type { ControlRequest, Heartbeat, MonitorStatus } from '@flotilla/protocol';
import { LeaseRecord } from './lease';
import { MemoryLeaseStore } from './memory-lease';
import { FailoverMonitor, MonitorLink } from './monitor';

const FAILURE_TIMEOUT_MS = 1000;
const LEASE_TTL_MS = 1500;
const TICK_MS = 100;

class FakeLink implements MonitorLink {
  readonly sent: { node: string; request: ControlRequest }[] = [];
  readonly statuses: MonitorStatus[] = [];
  sendControl(node: string, request: ControlRequest): void {
    this.sent.push({ node, request });
  }
  publishStatus(status: MonitorStatus): void {
    this.statuses.push(status);
  }
  get last(): MonitorStatus {
    return this.statuses[this.statuses.length - 1];
  }
}

interface NodeState {
  role: Heartbeat['role'];
  epoch: number;
  lsn: number;
  sync?: boolean;
  alive: boolean;
}

/** A scripted cluster: nodes heartbeat every tick while alive; the holder renews while alive. */
class Scenario {
  readonly clock = new FakeClock();
  readonly store = new MemoryLeaseStore(this.clock);
  readonly log = new MemoryLogger();
  readonly nodes = new Map<string, NodeState>();
  readonly monitors: { monitor: FailoverMonitor; link: FakeLink }[] = [];

  /** What each monitor's onPromoted was called with (the process relabels pods from it). */
  readonly promotions: { from: string | null; to: string; epoch: number }[] = [];

  constructor(options: { maxLagOnFailover?: number; monitors?: number; leaderDeadForMs?: number; monitorClockAheadMs?: number } = {}) {
    this.store.cas(null, { holder: 'replica-0', epoch: 1, ttlMs: LEASE_TTL_MS });
    this.nodes.set('replica-0', { role: 'leader', epoch: 1, lsn: 100, alive: options.leaderDeadForMs === undefined });
    if (options.leaderDeadForMs !== undefined) this.clock.advance(options.leaderDeadForMs);
    this.nodes.set('replica-1', { role: 'follower', epoch: 1, lsn: 98, alive: true });
    this.nodes.set('replica-2', { role: 'follower', epoch: 1, lsn: 99, alive: true });
    for (let i = 0; i < (options.monitors ?? 1); i++) {
      const link = new FakeLink();
      const monitor = new FailoverMonitor(
        { name: `monitor-${i}`, failureTimeoutMs: FAILURE_TIMEOUT_MS, maxLagOnFailover: options.maxLagOnFailover ?? 10, leaseTtlMs: LEASE_TTL_MS },
        {
          clock: this.clock.offsetBy(options.monitorClockAheadMs ?? 0),
          log: this.log.child({ monitor: `monitor-${i}` }),
          leaser: this.store.leaser(),
          link,
          onPromoted: (p) => this.promotions.push(p),
        },
      );
      monitor.onLease(this.store.record);
      this.monitors.push({ monitor, link });
    }
  }

  get monitor(): FailoverMonitor {
    return this.monitors[0].monitor;
  }
  get link(): FakeLink {
    return this.monitors[0].link;
  }

  /** Advances time by `ms` in ticks: heartbeats, renewal by a live holder, then every monitor ticks. */
  async run(ms: number, options: { watch?: boolean } = {}): Promise<void> {
    for (let t = 0; t < ms; t += TICK_MS) {
      this.clock.advance(TICK_MS);
      for (const [name, n] of this.nodes) {
        if (!n.alive) continue;
        const hb: Heartbeat = {
          type: 'hb', v: 1, node: name, role: n.role, epoch: n.epoch, leader: null, lsn: String(n.lsn), appliedLsn: String(n.lsn),
          flushedLsn: String(n.lsn), lagMs: 0, sync: n.sync ?? false, mode: 'async', logFormat: 'logical', version: 't', ts: this.clock.now(),
        };
        for (const m of this.monitors) m.monitor.onHeartbeat(hb);
      }
      const rec = this.store.record;
      if (rec?.holder && this.nodes.get(rec.holder)?.alive) {
        const n = this.nodes.get(rec.holder)!;
        // A live holder renews, and a node handed the lease starts leading in its epoch.
        this.store.cas(rec, { holder: rec.holder, epoch: rec.epoch, ttlMs: LEASE_TTL_MS });
        n.role = 'leader';
        n.epoch = rec.epoch;
      }
      for (const m of this.monitors) {
        if (options.watch !== false) m.monitor.onLease(this.store.record);
        await m.monitor.tick();
      }
    }
  }

  kill(name: string): void {
    this.nodes.get(name)!.alive = false;
  }

  lines(msg: string) {
    return this.log.lines.filter((l) => l.msg === msg);
  }
}

describe('FailoverMonitor', () => {
  it('does nothing while the leader heartbeats and renews', async () => {
    const s = new Scenario();
    s.monitor.setActive(true);
    await s.run(5000);
    expect(s.store.record).toMatchObject({ holder: 'replica-0', epoch: 1 });
    expect(s.link.last).toMatchObject({ type: 'monitor-status', monitor: 'monitor-0', active: true, leader: 'replica-0', epoch: 1, state: 'ok' });
    expect(s.link.statuses.length).toBe(50);
    expect(s.lines('leader failure detected')).toHaveLength(0);
  });

  it('promotes the most advanced follower exactly once, with epoch + 1, after silence and lease expiry', async () => {
    const s = new Scenario();
    s.monitor.setActive(true);
    await s.run(2000);
    s.kill('replica-0');
    const killedAt = s.clock.now();
    await s.run(1000);
    // Silent for 1 s, but the lease (renewed just before the kill) is still valid.
    expect(s.store.record?.holder).toBe('replica-0');
    expect(s.link.last.state).toBe('ok');
    expect(s.link.last.reason).toMatch(/leader replica-0 silent as leader for \d+ ms; its lease is valid for \d+ ms more/);
    await s.run(5000);
    expect(s.store.record).toMatchObject({ holder: 'replica-2', epoch: 2 });
    expect(s.lines('leader failure detected')).toHaveLength(1);
    expect(s.lines('promoting')).toHaveLength(1);
    expect(s.lines('promoted')).toHaveLength(1);
    expect(s.lines('promoted')[0].fields).toMatchObject({ from: 'replica-0', to: 'replica-2', epoch: 2 });
    expect(s.monitor.failovers).toBe(1);
    const last = s.link.last;
    expect(last).toMatchObject({ state: 'ok', leader: 'replica-2', epoch: 2, lastFailover: { from: 'replica-0', to: 'replica-2', epoch: 2 } });
    expect(last.lastFailover!.promotedAt - killedAt).toBeGreaterThanOrEqual(LEASE_TTL_MS - 300);
    expect(last.lastFailover!.promotedAt - killedAt).toBeLessThanOrEqual(LEASE_TTL_MS + 2 * TICK_MS);
  });

  it('does not fail over a leader that heartbeats although its lease ran out', async () => {
    const s = new Scenario();
    s.monitor.setActive(true);
    await s.run(1000);
    // The lease stops being renewed (the leader cannot reach the backend) but it keeps heartbeating.
    const stuck = s.store.record!;
    s.store.unreachable = true;
    for (let i = 0; i < 30; i++) {
      s.clock.advance(TICK_MS);
      s.monitor.onHeartbeat({ type: 'hb', v: 1, node: 'replica-0', role: 'leader', epoch: 1, leader: 'replica-0', lsn: '100', appliedLsn: '100', flushedLsn: '100', lagMs: 0, sync: false, mode: 'async', logFormat: 'logical', version: 't', ts: 0 });
      await s.monitor.tick();
    }
    s.store.unreachable = false;
    expect(s.store.record).toEqual(stuck);
    expect(s.lines('leader failure detected')).toHaveLength(0);
  });

  it('two active monitors racing on the same lease promote only once (the loser sees a conflict and re-reads)', async () => {
    const s = new Scenario({ monitors: 2 });
    for (const m of s.monitors) m.monitor.setActive(true);
    await s.run(1000);
    s.kill('replica-0');
    // Without the watch, the loser's record is stale when it tries its compare-and-swap.
    await s.run(4000, { watch: false });
    expect(s.store.record).toMatchObject({ holder: 'replica-2', epoch: 2 });
    expect(s.lines('promoted')).toHaveLength(1);
    expect(s.lines('lease changed under us: someone else acted; re-reading it')).toHaveLength(1);
    expect(s.monitors.map((m) => m.monitor.failovers).sort()).toEqual([0, 1]);
  });

  it('a conflict because the old leader came back and took its lease again means no promotion', async () => {
    const s = new Scenario();
    s.monitor.setActive(true);
    await s.run(1000);
    s.kill('replica-0');
    await s.run(1500, { watch: false });
    // The restarted old leader re-takes its expired lease with a new epoch before the monitor acts.
    const old = s.store.record!;
    s.store.cas(old, { holder: 'replica-0', epoch: 2, ttlMs: LEASE_TTL_MS });
    s.nodes.get('replica-0')!.alive = true;
    await s.run(3000, { watch: false });
    expect(s.store.record).toMatchObject({ holder: 'replica-0', epoch: 2 });
    expect(s.lines('promoted')).toHaveLength(0);
  });

  it('with every follower lagging more than maxLagOnFailover: no promotion, the reason in the status, logged once', async () => {
    const s = new Scenario({ maxLagOnFailover: 0 });
    s.monitor.setActive(true);
    await s.run(1000);
    s.kill('replica-0');
    await s.run(5000);
    expect(s.store.record).toMatchObject({ holder: 'replica-0', epoch: 1 });
    expect(s.link.last.state).toBe('no-candidate');
    expect(s.link.last.reason).toBe(
      'no eligible candidate: replica-0 is the failed leader; ' +
        'replica-1 lags 2 LSNs behind the last leader position 100 (maxLagOnFailover 0); ' +
        'replica-2 lags 1 LSNs behind the last leader position 100 (maxLagOnFailover 0)',
    );
    expect(s.lines('no eligible candidate')).toHaveLength(1);
    expect(s.lines('no eligible candidate')[0].fields.reason).toBe(s.link.last.reason);
  });

  it('skips a seeding follower and an unhealthy one', async () => {
    const s = new Scenario();
    s.nodes.get('replica-2')!.role = 'seeding';
    s.monitor.setActive(true);
    await s.run(1000);
    s.kill('replica-0');
    s.kill('replica-1');
    await s.run(4000);
    expect(s.link.last.state).toBe('no-candidate');
    expect(s.link.last.reason).toMatch(/replica-1 is unhealthy .*replica-2 is seeding, not a follower/);
    s.nodes.get('replica-2')!.role = 'follower';
    await s.run(500);
    expect(s.store.record).toMatchObject({ holder: 'replica-2', epoch: 2 });
  });

  it('a standby monitor observes but never acts, and says standby', async () => {
    const s = new Scenario();
    await s.run(1000);
    s.kill('replica-0');
    await s.run(5000);
    expect(s.store.record).toMatchObject({ holder: 'replica-0', epoch: 1 });
    expect(s.link.last).toMatchObject({ active: false, state: 'standby' });
    expect(s.log.lines).toHaveLength(0);
    s.monitor.setActive(false);
    s.monitor.setActive(false);
    expect(s.log.lines.map((l) => l.msg)).toEqual(['monitor standby']);
    // Made active (the other monitor died), it fails over at once: it kept listening meanwhile.
    s.monitor.setActive(true);
    await s.run(TICK_MS);
    expect(s.store.record).toMatchObject({ holder: 'replica-2', epoch: 2 });
    expect(s.lines('monitor active')).toHaveLength(1);
  });

  it('does not decide before it has listened for a full failure window, nor timed the lease itself for its TTL', async () => {
    // Started when the leader is already dead and its lease expired: it has heard nobody yet.
    const s = new Scenario({ leaderDeadForMs: LEASE_TTL_MS + 1 });
    s.monitor.setActive(true);
    await s.run(FAILURE_TIMEOUT_MS - 2 * TICK_MS);
    expect(s.link.last.reason).toMatch(/warming up/);
    expect(s.store.record?.holder).toBe('replica-0');
    // Past the failure window; the lease is expired by its timestamp, but this monitor first saw
    // it FAILURE_TIMEOUT_MS + 2 ticks ago, and only its own timing counts against a clock offset.
    await s.run(4 * TICK_MS);
    expect(s.store.record?.holder).toBe('replica-0');
    expect(s.link.last.reason).toMatch(/silent as leader for .*; its lease is valid for \d+ ms more/);
    await s.run(LEASE_TTL_MS - FAILURE_TIMEOUT_MS);
    expect(s.store.record).toMatchObject({ holder: 'replica-2', epoch: 2 });
  });

  it("a monitor whose wall clock runs ahead of the leader's does not take a lease the leader still counts valid", async () => {
    // 10 s ahead: by the timestamps, every lease the leader writes has already run out.
    const s = new Scenario({ monitorClockAheadMs: 10_000 });
    s.monitor.setActive(true);
    await s.run(2000);
    expect(s.store.record).toMatchObject({ holder: 'replica-0', epoch: 1 });
    s.kill('replica-0'); // its last renewal was in this instant's tick
    const renewedAtMono = s.clock.monotonic();
    // The leader counts itself valid until its renewal + TTL - safety margin (300 ms): nobody may
    // be promoted before that. Going by timestamps, the monitor promoted after the 1 s failure window.
    await s.run(LEASE_TTL_MS - TICK_MS);
    expect(s.store.record?.holder).toBe('replica-0');
    expect(s.lines('promoting')).toEqual([]);
    await s.run(3 * TICK_MS);
    expect(s.store.record).toMatchObject({ holder: 'replica-2', epoch: 2 });
    expect(s.clock.monotonic() - renewedAtMono).toBeGreaterThan(LEASE_TTL_MS);
  });

  it('a handed-over lease that the candidate never takes up is handed on after it runs out', async () => {
    const s = new Scenario();
    s.monitor.setActive(true);
    await s.run(1000);
    s.kill('replica-0');
    // replica-2 will be chosen but dies at once (before it can renew or heartbeat as leader).
    await s.run(1500);
    await waitForHolder(s, 'replica-2');
    s.kill('replica-2');
    await s.run(4000);
    expect(s.store.record).toMatchObject({ holder: 'replica-1', epoch: 3 });
    expect(s.lines('promoted').map((l) => l.fields.to)).toEqual(['replica-2', 'replica-1']);
  });

  it('a free lease after a leader existed (released, deleted) goes to the most up-to-date follower, above every epoch seen', async () => {
    const s = new Scenario();
    s.monitor.setActive(true);
    await s.run(2000);
    s.kill('replica-0');
    s.store.delete(); // kubectl delete lease, or the leader released it
    await s.run(LEASE_TTL_MS - TICK_MS);
    // Its last holder may count itself valid for up to its TTL after its last renewal: not yet.
    expect(s.store.record).toBeNull();
    expect(s.link.last.reason).toMatch(/waiting for its last holder's TTL/);
    await s.run(3 * TICK_MS);
    expect(s.store.record).toMatchObject({ holder: 'replica-2', epoch: 2 });
    expect(s.lines('the leader lease is free')).toHaveLength(1);
    expect(s.lines('promoted')[0].fields).toMatchObject({ from: null, to: 'replica-2', epoch: 2 });
  });

  it('while the lease backend is unreachable it retries every tick but logs the failed promotion once', async () => {
    const s = new Scenario();
    s.monitor.setActive(true);
    await s.run(2000);
    s.kill('replica-0');
    s.store.unreachable = true;
    await s.run(4000); // ~25 ticks past the lease's expiry
    expect(s.lines('promotion failed: lease backend unavailable; retrying every tick')).toHaveLength(1);
    expect(s.link.last).toMatchObject({ state: 'failing-over' });
    s.store.unreachable = false;
    await s.run(TICK_MS);
    expect(s.store.record).toMatchObject({ holder: 'replica-2', epoch: 2 });
  });

  it('a promotion whose lease write went unanswered but was stored is recorded once the lease shows it', async () => {
    const s = new Scenario();
    s.monitor.setActive(true);
    await s.run(2000);
    s.kill('replica-0');
    s.store.loseAnswers = 1;
    await s.run(4000);
    // Stored: replica-2 took it up and leads; the monitor learned it from the lease, not the answer.
    expect(s.store.record).toMatchObject({ holder: 'replica-2', epoch: 2 });
    expect(s.lines('promotion failed: lease backend unavailable; retrying every tick')).toHaveLength(1);
    expect(s.lines('promoted').map((l) => l.fields)).toEqual([expect.objectContaining({ from: 'replica-0', to: 'replica-2', epoch: 2, note: expect.stringContaining('unanswered') })]);
    expect(s.link.last).toMatchObject({ state: 'ok', lastFailover: { from: 'replica-0', to: 'replica-2', epoch: 2 } });
    expect(s.monitor.failovers).toBe(1);
    expect(s.promotions).toEqual([{ from: 'replica-0', to: 'replica-2', epoch: 2 }]); // the former leader's pod is relabelled
  });

  it('a promotion retried after an unanswered write that was not stored is recorded once, though the lease shows it before the answer comes', async () => {
    const s = new Scenario();
    s.monitor.setActive(true);
    await s.run(2000);
    s.kill('replica-0');
    // The first write times out without being stored (the monitor cannot tell: it may have been);
    // the retry a tick later is stored, and the lease's watchers hear of it before its answer (the
    // memory store tells its watchers inside the write; apps/monitor feeds its watch to onLease).
    s.store.leaser().watch((r) => s.monitor.onLease(r));
    s.store.dropWrites = 1;
    await s.run(4000);
    expect(s.store.record).toMatchObject({ holder: 'replica-2', epoch: 2 });
    expect(s.lines('promoted').map((l) => l.fields)).toEqual([expect.objectContaining({ from: 'replica-0', to: 'replica-2', epoch: 2 })]);
    expect(s.monitor.failovers).toBe(1);
    expect(s.promotions).toEqual([{ from: 'replica-0', to: 'replica-2', epoch: 2 }]);
  });

  it('a promotion whose answer was lost after the lease\'s watch had shown it is recorded, once', async () => {
    const s = new Scenario();
    s.monitor.setActive(true);
    await s.run(2000);
    s.kill('replica-0');
    s.store.leaser().watch((r) => s.monitor.onLease(r));
    s.store.loseAnswers = 1;
    await s.run(4000);
    expect(s.store.record).toMatchObject({ holder: 'replica-2', epoch: 2 });
    expect(s.lines('promoted').map((l) => l.fields)).toEqual([expect.objectContaining({ from: 'replica-0', to: 'replica-2', epoch: 2, note: expect.stringContaining('unanswered') })]);
    expect(s.monitor.failovers).toBe(1);
    expect(s.promotions).toEqual([{ from: 'replica-0', to: 'replica-2', epoch: 2 }]);
  });

  it('time its NATS connection was down counts as nobody\'s silence: a leader heard again soon after the heal is not failed over', async () => {
    for (const told of [true, false]) {
      const s = new Scenario();
      s.monitor.setActive(true);
      await s.run(2000);
      // A NATS outage: nobody is heard, and the leader lets its lease lapse (it cannot tell who sees it).
      if (told) s.monitor.heartbeatsCut();
      for (const n of s.nodes.values()) n.alive = false;
      await s.run(3000);
      expect(s.store.record).toMatchObject({ holder: 'replica-0', epoch: 1 });
      expect(s.lines('promoted')).toEqual([]);
      // The heal: the followers are heard first, the leader renews 300 ms later.
      if (told) s.monitor.heartbeatsResumed();
      s.nodes.get('replica-1')!.alive = true;
      s.nodes.get('replica-2')!.alive = true;
      await s.run(300);
      s.nodes.get('replica-0')!.alive = true;
      await s.run(2000);
      if (told) {
        expect(s.store.record).toMatchObject({ holder: 'replica-0', epoch: 1 });
        expect(s.lines('promoted')).toEqual([]);
      } else {
        // Not told of the outage: the leader was failed over for silence it did not cause.
        expect(s.store.record).toMatchObject({ holder: 'replica-2', epoch: 2 });
      }
    }
  });

  it('a flapping NATS connection does not put failover off for ever: a dead leader\'s silence adds up over the connected time', async () => {
    const s = new Scenario();
    s.monitor.setActive(true);
    await s.run(2000);
    s.kill('replica-0');
    // Connected 400 ms, cut 400 ms, over and over (the followers are heard while connected).
    for (let i = 0; i < 10 && s.lines('promoted').length === 0; i++) {
      await s.run(400);
      s.monitor.heartbeatsCut();
      for (const n of ['replica-1', 'replica-2']) s.nodes.get(n)!.alive = false;
      await s.run(400);
      s.monitor.heartbeatsResumed();
      for (const n of ['replica-1', 'replica-2']) s.nodes.get(n)!.alive = true;
    }
    expect(s.lines('promoted').map((l) => l.fields)).toEqual([expect.objectContaining({ from: 'replica-0', to: 'replica-2', epoch: 2 })]);
    // About a failure window of connected time (1 s: three 400 ms stretches), not never.
    expect(s.lines('heartbeats resumed: the time without them counts as nobody\'s silence').length).toBeLessThanOrEqual(4);
  });

  it('a deleted lease is not given away while its leader still heartbeats as leader with a valid lease', async () => {
    const s = new Scenario();
    s.monitor.setActive(true);
    await s.run(2000);
    s.store.delete(); // the leader is alive: it has not noticed yet (its renewals go on failing)
    const leader = s.nodes.get('replica-0')!;
    leader.alive = false; // stop the scenario's own renewals; the monitor still hears it as leader:
    for (let t = 0; t < 3000; t += TICK_MS) {
      s.clock.advance(TICK_MS);
      s.monitor.onHeartbeat({
        type: 'hb', v: 1, node: 'replica-0', role: 'leader', epoch: 1, leader: 'replica-0', lsn: '100', appliedLsn: '100', flushedLsn: '100',
        lagMs: 0, sync: false, mode: 'async', logFormat: 'logical', version: 't', ts: s.clock.now(), leaseValid: true,
      });
      s.monitor.onLease(null);
      await s.monitor.tick();
    }
    expect(s.store.record).toBeNull();
    expect(s.link.last.reason).toMatch(/replica-0, which still heartbeats as leader/);
  });

  it('at a first start (no epoch seen anywhere) leaves a free lease to the replicas', async () => {
    const clock = new FakeClock();
    const store = new MemoryLeaseStore(clock);
    const link = new FakeLink();
    const monitor = new FailoverMonitor(
      { name: 'monitor-0', failureTimeoutMs: FAILURE_TIMEOUT_MS, maxLagOnFailover: 10, leaseTtlMs: LEASE_TTL_MS },
      { clock, log: new MemoryLogger(), leaser: store.leaser(), link },
    );
    monitor.onLease(null);
    monitor.setActive(true);
    for (let t = 0; t < 3000; t += TICK_MS) {
      clock.advance(TICK_MS);
      for (const node of ['replica-0', 'replica-1']) {
        monitor.onHeartbeat({
          type: 'hb', v: 1, node, role: 'follower', epoch: 0, leader: null, lsn: '0', appliedLsn: '0', flushedLsn: '0',
          lagMs: 0, sync: false, mode: 'async', logFormat: 'logical', version: 't', ts: clock.now(),
        });
      }
      await monitor.tick();
    }
    expect(store.record).toBeNull();
    expect(link.last.reason).toMatch(/at a first start a replica takes it itself/);
  });

  it('a candidate that never takes up the lease does not loosen the lag bound for the next one', async () => {
    const s = new Scenario({ maxLagOnFailover: 1 }); // leader at 100, replica-2 at 99, replica-1 at 98
    s.monitor.setActive(true);
    await s.run(1000);
    s.kill('replica-0');
    await s.run(1500);
    await waitForHolder(s, 'replica-2');
    s.kill('replica-2'); // dies before taking the lease up
    await s.run(4000);
    // replica-1 is 2 behind what the failed leader had: still too far, whatever replica-2 had.
    expect(s.lines('promoted').map((l) => l.fields.to)).toEqual(['replica-2']);
    expect(s.link.last.state).toBe('no-candidate');
  });

  it('tells the older of two leaders to step down, at most once per failure timeout', async () => {
    const s = new Scenario();
    s.monitor.setActive(true);
    s.nodes.get('replica-1')!.role = 'leader';
    s.nodes.get('replica-1')!.epoch = 0;
    await s.run(2000);
    const downs = s.link.sent.filter((x) => x.request.type === 'step-down');
    expect(downs.length).toBeGreaterThanOrEqual(1);
    expect(downs.length).toBeLessThanOrEqual(2);
    expect(downs[0]).toEqual({ node: 'replica-1', request: { type: 'step-down', v: 1, epoch: 1, leader: 'replica-0' } });
    expect(s.lines('split brain: telling the older leader to step down')[0].fields).toMatchObject({ node: 'replica-1', leader: 'replica-0' });
  });
});

async function waitForHolder(s: Scenario, holder: string): Promise<LeaseRecord> {
  for (let i = 0; i < 50; i++) {
    if (s.store.record?.holder === holder) return s.store.record;
    await s.run(TICK_MS);
  }
  throw new Error(`lease never went to ${holder}`);
}
