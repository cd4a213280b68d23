import { FakeClock } from '@flotilla/logging';
import { encode, MonitorStatus, ProtocolError } from '@flotilla/protocol';
import { decodeMonitorStatus, MONITOR_STATUS_STALE_MS, MonitorBoard } from './monitor-board';

function status(monitor: string, fields: Partial<MonitorStatus> = {}): MonitorStatus {
  return { type: 'monitor-status', v: 1, monitor, active: false, leader: 'replica-0', epoch: 3, state: 'standby', ts: 0, ...fields };
}

describe('MonitorBoard', () => {
  it('reports the active monitor, its state and reason', () => {
    const board = new MonitorBoard(new FakeClock());
    board.ingest(status('monitor-1'));
    board.ingest(status('monitor-0', { active: true, state: 'no-candidate', reason: 'no eligible candidate: replica-1 lags 40 LSNs' }));
    expect(board.failover()).toEqual({ state: 'no-candidate', monitor: 'monitor-0', reason: 'no eligible candidate: replica-1 lags 40 LSNs' });
  });

  it('says unknown, naming the standbys, when no active monitor is heard from', () => {
    const board = new MonitorBoard(new FakeClock());
    expect(board.failover()).toEqual({ state: 'unknown', monitor: null, reason: `no failover monitor heard from in the last ${MONITOR_STATUS_STALE_MS} ms` });
    board.ingest(status('monitor-1'));
    expect(board.failover()).toEqual({ state: 'unknown', monitor: null, reason: 'no active failover monitor (standby: monitor-1)' });
  });

  it('ignores a monitor gone silent, and switches to the standby that became active', () => {
    const clock = new FakeClock();
    const board = new MonitorBoard(clock);
    board.ingest(status('monitor-0', { active: true, state: 'ok' }));
    clock.advance(MONITOR_STATUS_STALE_MS);
    expect(board.failover().state).toBe('unknown');
    board.ingest(status('monitor-1', { active: true, state: 'ok' }));
    expect(board.failover()).toEqual({ state: 'ok', monitor: 'monitor-1' });
  });

  it('keeps the most recent failover, whichever monitor made it', () => {
    const clock = new FakeClock();
    const board = new MonitorBoard(clock);
    const first = { from: 'replica-0', to: 'replica-1', epoch: 2, detectedAt: 1, promotedAt: 2 };
    board.ingest(status('monitor-0', { active: true, state: 'ok', lastFailover: first }));
    clock.advance(MONITOR_STATUS_STALE_MS);
    board.ingest(status('monitor-1', { active: true, state: 'ok' }));
    expect(board.failover().lastFailover).toEqual(first);
    const second = { from: 'replica-1', to: 'replica-2', epoch: 3, detectedAt: 5, promotedAt: 6 };
    board.ingest(status('monitor-1', { active: true, state: 'ok', lastFailover: second }));
    expect(board.failover().lastFailover).toEqual(second);
  });
});

describe('decodeMonitorStatus', () => {
  it('accepts a status and refuses bad shapes', () => {
    expect(decodeMonitorStatus(encode(status('monitor-0')))).toEqual(status('monitor-0'));
    expect(() => decodeMonitorStatus(encode({ ...status('monitor-0'), state: 'great' }))).toThrow(ProtocolError);
    expect(() => decodeMonitorStatus(encode({ ...status('monitor-0'), active: 'yes' }))).toThrow(/bad active/);
    expect(() => decodeMonitorStatus(encode({ ...status('monitor-0'), lastFailover: { to: 1 } }))).toThrow(/bad lastFailover/);
    expect(() => decodeMonitorStatus(encode({ type: 'hb', v: 1 }))).toThrow(/expected monitor-status/);
  });
});
