import { formatSwitchoverReply } from './switchover';

describe('formatSwitchoverReply', () => {
  it('names the new leader and epoch when the gateway says them', () => {
    expect(formatSwitchoverReply('replica-1', { leader: 'replica-1', epoch: 4, lsn: '77' })).toBe('switchover done: replica-1 leads at epoch 4, lsn 77');
  });

  it('falls back to the requested target', () => {
    expect(formatSwitchoverReply('replica-2', undefined)).toBe('switchover done: replica-2 leads');
  });
});
