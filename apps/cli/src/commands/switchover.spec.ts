import { formatSwitchoverReply } from './switchover';

describe('formatSwitchoverReply', () => {
  it('names the new leader, epoch, old leader and LSN from the gateway answer', () => {
    expect(formatSwitchoverReply('replica-1', { from: 'replica-0', to: 'replica-1', epoch: 4, lsn: '77' })).toBe(
      'switchover done: replica-1 leads at epoch 4 (from replica-0, handed over at lsn 77)',
    );
  });

  it('falls back to the requested target', () => {
    expect(formatSwitchoverReply('replica-2', undefined)).toBe('switchover done: replica-2 leads');
  });
});
