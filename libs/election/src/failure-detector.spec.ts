import { FakeClock } from '@flotilla/logging';
import type { Heartbeat } from '@flotilla/protocol';
import { FailureDetector } from './failure-detector';

function hb(node: string, role: Heartbeat['role'] = 'follower', epoch = 1): Heartbeat {
  return { type: 'hb', v: 1, node, role, epoch, leader: null, lsn: '0', appliedLsn: '0', flushedLsn: '0', lagMs: 0, sync: false, mode: 'async', logFormat: 'logical', version: 't', ts: 0 };
}

describe('FailureDetector', () => {
  it('is healthy while heartbeats are younger than failureTimeoutMs, dead after', () => {
    const clock = new FakeClock();
    const d = new FailureDetector(clock, 1000);
    d.observe(hb('replica-0'));
    clock.advance(999);
    expect(d.isHealthy('replica-0')).toBe(true);
    clock.advance(1);
    expect(d.isHealthy('replica-0')).toBe(false);
    expect(d.silentForMs('replica-0')).toBe(1000);
    d.observe(hb('replica-0'));
    expect(d.isHealthy('replica-0')).toBe(true);
  });

  it('does not know nodes it never heard from', () => {
    const d = new FailureDetector(new FakeClock(), 1000);
    expect(d.isHealthy('replica-9')).toBe(false);
    expect(d.silentForMs('replica-9')).toBe(Infinity);
    expect(d.lastHeartbeat('replica-9')).toBeUndefined();
  });

  it('tracks the leader role separately: a restarted leader heartbeating as starting is not leading', () => {
    const clock = new FakeClock();
    const d = new FailureDetector(clock, 1000);
    d.observe(hb('replica-0', 'leader', 3));
    clock.advance(600);
    d.observe(hb('replica-0', 'starting', 3));
    clock.advance(600);
    expect(d.isHealthy('replica-0')).toBe(true);
    expect(d.isLeaderAlive('replica-0', 3)).toBe(false);
    expect(d.silentAsLeaderForMs('replica-0', 3)).toBe(1200);
  });

  it('a leader that reports its lease invalid counts as silent (cut off from the lease store, still on NATS)', () => {
    const clock = new FakeClock();
    const d = new FailureDetector(clock, 1000);
    d.observe(hb('replica-0', 'leader', 3));
    for (let i = 0; i < 5; i++) {
      clock.advance(250);
      d.observe({ ...hb('replica-0', 'leader', 3), leaseValid: false });
    }
    expect(d.isHealthy('replica-0')).toBe(true);
    expect(d.isLeaderAlive('replica-0', 3)).toBe(false);
    d.observe({ ...hb('replica-0', 'leader', 3), leaseValid: true });
    expect(d.isLeaderAlive('replica-0', 3)).toBe(true);
  });

  it('counts a leader heartbeat only at the given epoch or later', () => {
    const d = new FailureDetector(new FakeClock(), 1000);
    d.observe(hb('replica-0', 'leader', 2));
    expect(d.isLeaderAlive('replica-0', 2)).toBe(true);
    expect(d.isLeaderAlive('replica-0', 3)).toBe(false);
  });

  it('lists nodes sorted by name and forgets long-silent ones', () => {
    const clock = new FakeClock();
    const d = new FailureDetector(clock, 1000, 5000);
    d.observe(hb('replica-1'));
    clock.advance(4000);
    d.observe(hb('replica-0'));
    expect(d.nodes().map((n) => [n.hb.node, n.healthy])).toEqual([
      ['replica-0', true],
      ['replica-1', false],
    ]);
    clock.advance(1000);
    expect(d.nodes().map((n) => n.hb.node)).toEqual(['replica-0']);
  });

  it('refuses a non-positive timeout', () => {
    expect(() => new FailureDetector(new FakeClock(), 0)).toThrow(RangeError);
  });
});
