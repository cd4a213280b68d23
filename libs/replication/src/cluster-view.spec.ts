import { FakeClock } from '@flotilla/logging';
import { Heartbeat, PROTOCOL_VERSION } from '@flotilla/protocol';
import { ClusterView } from './cluster-view';

function hb(node: string, fields: Partial<Heartbeat> = {}): Heartbeat {
  return {
    type: 'hb',
    v: PROTOCOL_VERSION,
    node,
    role: 'follower',
    epoch: 1,
    leader: 'replica-0',
    lsn: '10',
    appliedLsn: '10',
    flushedLsn: '10',
    lagMs: 0,
    sync: false,
    mode: 'async',
    logFormat: 'logical',
    version: '0.1.0',
    ts: 0,
    ...fields,
  };
}

function setup(): { clock: FakeClock; view: ClusterView } {
  const clock = new FakeClock();
  return { clock, view: new ClusterView({ clock }) };
}

describe('ClusterView health', () => {
  it('defaults staleAfterMs to three heartbeat intervals', () => {
    expect(setup().view.staleAfterMs).toBe(750);
  });

  it('marks a node unhealthy once its last heartbeat is staleAfterMs old', () => {
    const { clock, view } = setup();
    view.ingest(hb('replica-1'));
    clock.advance(749);
    expect(view.nodes()[0].healthy).toBe(true);
    clock.advance(1);
    expect(view.nodes()[0].healthy).toBe(false);
    view.ingest(hb('replica-1'));
    expect(view.nodes()[0].healthy).toBe(true);
  });

  it('lists nodes sorted by name with the contract fields', () => {
    const { view } = setup();
    view.ingest(hb('replica-1', { lagMs: 12, problem: 'catching up' }));
    view.ingest(hb('replica-0', { role: 'leader', lsn: '42', appliedLsn: '42', flushedLsn: '41', sync: true }));
    expect(view.nodes()).toEqual([
      {
        name: 'replica-0', role: 'leader', epoch: 1, lsn: '42', appliedLsn: '42', flushedLsn: '41', lagMs: 0, sync: true,
        healthy: true, version: '0.1.0', mode: 'async', logFormat: 'logical', problem: null,
      },
      {
        name: 'replica-1', role: 'follower', epoch: 1, lsn: '10', appliedLsn: '10', flushedLsn: '10', lagMs: 12, sync: false,
        healthy: true, version: '0.1.0', mode: 'async', logFormat: 'logical', problem: 'catching up',
      },
    ]);
  });

  it('forgets nodes silent for forgetAfterMs', () => {
    const clock = new FakeClock();
    const view = new ClusterView({ clock, staleAfterMs: 100, forgetAfterMs: 1000 });
    view.ingest(hb('replica-1'));
    clock.advance(999);
    expect(view.nodes()).toHaveLength(1);
    clock.advance(1);
    expect(view.nodes()).toHaveLength(0);
  });

  it('rejects nonsensical options', () => {
    const clock = new FakeClock();
    expect(() => new ClusterView({ clock, staleAfterMs: 0 })).toThrow(RangeError);
    expect(() => new ClusterView({ clock, staleAfterMs: 500, forgetAfterMs: 100 })).toThrow(RangeError);
  });
});

describe('ClusterView leader', () => {
  it('is undefined when nothing is known', () => {
    expect(setup().view.leader()).toBeUndefined();
    expect(setup().view.summary()).toEqual({ epoch: 0, leader: null, mode: null, logFormat: null });
  });

  it('is the healthy leader of the highest epoch, ignoring an older self-proclaimed leader', () => {
    const { view } = setup();
    view.ingest(hb('replica-0', { role: 'leader', epoch: 3 }));
    view.ingest(hb('replica-1', { role: 'leader', epoch: 4 }));
    view.ingest(hb('replica-2', { role: 'follower', epoch: 4 }));
    expect(view.leader()?.name).toBe('replica-1');
    expect(view.summary()).toMatchObject({ epoch: 4, leader: 'replica-1' });
  });

  it('does not trust an old-epoch leader when a follower already saw a newer epoch', () => {
    const { view } = setup();
    view.ingest(hb('replica-0', { role: 'leader', epoch: 3 }));
    view.ingest(hb('replica-2', { role: 'follower', epoch: 4 }));
    expect(view.leader()).toBeUndefined();
    expect(view.summary().epoch).toBe(4);
  });

  it('ignores a leader whose heartbeats stopped', () => {
    const { clock, view } = setup();
    view.ingest(hb('replica-0', { role: 'leader', epoch: 2 }));
    clock.advance(500);
    view.ingest(hb('replica-1', { epoch: 2 }));
    clock.advance(300);
    expect(view.leader()).toBeUndefined();
    expect(view.summary()).toMatchObject({ epoch: 2, leader: null, mode: 'async', logFormat: 'logical' });
  });

  it('reports no leader when two healthy nodes claim the same highest epoch', () => {
    const { view } = setup();
    view.ingest(hb('replica-0', { role: 'leader', epoch: 5 }));
    view.ingest(hb('replica-1', { role: 'leader', epoch: 5 }));
    expect(view.leader()).toBeUndefined();
  });

  it('takes mode and log format from the leader', () => {
    const { view } = setup();
    view.ingest(hb('replica-0', { role: 'leader', mode: 'semi-sync', logFormat: 'statement' }));
    view.ingest(hb('replica-1', { mode: 'async', logFormat: 'logical' }));
    expect(view.summary()).toEqual({ epoch: 1, leader: 'replica-0', mode: 'semi-sync', logFormat: 'statement' });
  });
});

describe('ClusterView.pickForRead', () => {
  function threeNodes(): { clock: FakeClock; view: ClusterView } {
    const s = setup();
    s.view.ingest(hb('replica-0', { role: 'leader', lsn: '100', appliedLsn: '100' }));
    s.view.ingest(hb('replica-1', { appliedLsn: '90', lagMs: 40 }));
    s.view.ingest(hb('replica-2', { appliedLsn: '100', lagMs: 5 }));
    return s;
  }

  it('any: round-robins over the healthy followers and the leader', () => {
    const { view } = threeNodes();
    const picks = Array.from({ length: 6 }, () => view.pickForRead({ consistency: 'any' }));
    expect(picks).toEqual(['replica-0', 'replica-1', 'replica-2', 'replica-0', 'replica-1', 'replica-2']);
  });

  it('any: skips unhealthy, starting, seeding, problem and excluded nodes and deposed leaders', () => {
    const { clock, view } = setup();
    view.ingest(hb('replica-9', { epoch: 1 }));
    clock.advance(800);
    view.ingest(hb('replica-0', { role: 'leader', epoch: 1 }));
    view.ingest(hb('replica-1', { role: 'starting', epoch: 2 }));
    view.ingest(hb('replica-2', { role: 'seeding', epoch: 2 }));
    view.ingest(hb('replica-3', { epoch: 2, problem: 'diverged' }));
    view.ingest(hb('replica-4', { epoch: 2 }));
    view.ingest(hb('replica-5', { epoch: 2 }));
    const picks = new Set(Array.from({ length: 6 }, () => view.pickForRead({ consistency: 'any', exclude: ['replica-5'] })));
    expect([...picks]).toEqual(['replica-4']);
  });

  it('any: undefined when no node can serve', () => {
    const { view } = setup();
    view.ingest(hb('replica-1', { role: 'starting' }));
    expect(view.pickForRead({ consistency: 'any' })).toBeUndefined();
  });

  it('strong: the leader only', () => {
    const { view } = threeNodes();
    expect(view.pickForRead({ consistency: 'strong' })).toBe('replica-0');
    expect(view.pickForRead({ consistency: 'strong', exclude: ['replica-0'] })).toBeUndefined();
  });

  it('read-your-writes: a follower at or past minLsn', () => {
    const { view } = threeNodes();
    const picks = new Set(Array.from({ length: 4 }, () => view.pickForRead({ consistency: 'read-your-writes', minLsn: '95' })));
    expect([...picks]).toEqual(['replica-2']);
    const both = new Set(Array.from({ length: 4 }, () => view.pickForRead({ consistency: 'read-your-writes', minLsn: '90' })));
    expect([...both].sort()).toEqual(['replica-1', 'replica-2']);
  });

  it('read-your-writes: the most advanced follower when none has minLsn yet (the caller makes it wait)', () => {
    const { view } = threeNodes();
    expect(view.pickForRead({ consistency: 'read-your-writes', minLsn: '101' })).toBe('replica-2');
    view.ingest(hb('replica-1', { appliedLsn: '7' }));
    view.ingest(hb('replica-2', { appliedLsn: '9' }));
    expect(view.pickForRead({ consistency: 'read-your-writes', minLsn: '50' })).toBe('replica-2');
  });

  it('read-your-writes: the leader when no follower can serve', () => {
    const { view } = threeNodes();
    expect(view.pickForRead({ consistency: 'read-your-writes', minLsn: '101', exclude: ['replica-1', 'replica-2'] })).toBe('replica-0');
  });

  it('read-your-writes: compares LSNs as 64-bit integers, not as strings or doubles', () => {
    const { view } = setup();
    view.ingest(hb('replica-1', { appliedLsn: '9007199254740993' }));
    view.ingest(hb('replica-2', { appliedLsn: '9' }));
    expect(view.pickForRead({ consistency: 'read-your-writes', minLsn: '9007199254740993' })).toBe('replica-1');
    expect(view.pickForRead({ consistency: 'read-your-writes', minLsn: '10' })).toBe('replica-1');
  });

  it('bounded: nodes within maxLagMs, else the leader', () => {
    const { view } = threeNodes();
    const picks = new Set(Array.from({ length: 6 }, () => view.pickForRead({ consistency: 'bounded', maxLagMs: 10 })));
    expect([...picks].sort()).toEqual(['replica-0', 'replica-2']);
    expect(view.pickForRead({ consistency: 'bounded', maxLagMs: 10, exclude: ['replica-0', 'replica-2'] })).toBeUndefined();
  });

  it('bounded: the leader when every follower lags too much', () => {
    const { view } = threeNodes();
    expect(view.pickForRead({ consistency: 'bounded', maxLagMs: 1, exclude: ['replica-0'] })).toBeUndefined();
    view.ingest(hb('replica-2', { lagMs: 50 }));
    const picks = new Set(Array.from({ length: 3 }, () => view.pickForRead({ consistency: 'bounded', maxLagMs: 1 })));
    expect([...picks]).toEqual(['replica-0']);
  });
});
