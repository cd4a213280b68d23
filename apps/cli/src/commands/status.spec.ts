import { formatStatus } from './status';

describe('formatStatus', () => {
  it('prints a summary line and one row per node in name order', () => {
    const lines = formatStatus({
      cluster: 'flotilla',
      epoch: 3,
      leader: 'replica-0',
      mode: 'semi-sync',
      logFormat: 'logical',
      nodes: [
        { name: 'replica-10', role: 'follower', epoch: 3, lsn: '40', appliedLsn: '39', flushedLsn: '38', lagMs: 12, sync: false, healthy: false, problem: 'log not yet checked by the leader' },
        { name: 'replica-0', role: 'leader', epoch: 3, lsn: '42', appliedLsn: '42', flushedLsn: '42', lagMs: 0, sync: false, healthy: true, problem: null },
        { name: 'replica-2', role: 'follower', epoch: 3, lsn: '42', appliedLsn: '42', lagMs: 1, sync: true, healthy: true },
      ],
    });
    expect(lines).toEqual([
      'cluster flotilla  epoch 3  leader replica-0  mode semi-sync  log logical',
      '',
      'name        role      epoch  applied  flushed  lagMs  sync  healthy',
      '----------  --------  -----  -------  -------  -----  ----  -------',
      'replica-0   leader        3  42       42           0  no    yes',
      'replica-2   follower      3  42       ?            1  yes   yes',
      'replica-10  follower      3  39       38          12  no    NO',
      '',
      'replica-10: log not yet checked by the leader',
    ]);
  });

  it('adds what the failover monitor says, when the gateway reports it', () => {
    const lines = formatStatus({
      cluster: 'c', epoch: 4, leader: null, mode: 'async', nodes: [],
      failover: {
        state: 'no-candidate', monitor: 'monitor-1', reason: 'no eligible candidate: replica-1 lags 20 LSNs',
        lastFailover: { from: 'replica-0', to: 'replica-2', epoch: 4, promotedAt: Date.UTC(2026, 0, 1) },
      },
    });
    expect(lines[1]).toBe('failover no-candidate (monitor-1): no eligible candidate: replica-1 lags 20 LSNs; last: replica-0 -> replica-2 at epoch 4, 2026-01-01T00:00:00.000Z');
    expect(lines[2]).toBe('');
  });

  it('says when there is no leader', () => {
    expect(formatStatus({ cluster: 'c', epoch: 0, leader: null, mode: 'async', nodes: [] })[0]).toContain('leader (none)');
  });
});
