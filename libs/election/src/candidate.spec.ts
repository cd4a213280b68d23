import { CandidateNode, chooseCandidate } from './candidate';

function node(name: string, flushedLsn: string, extra: Partial<CandidateNode> = {}): CandidateNode {
  return { name, role: 'follower', epoch: 2, flushedLsn, sync: false, healthy: true, ...extra };
}

const criteria = { lastLeaderLsn: '100', maxLagOnFailover: 10, exclude: ['replica-0'] };

describe('chooseCandidate', () => {
  it('chooses the highest flushed LSN', () => {
    const c = chooseCandidate([node('replica-1', '95'), node('replica-2', '99')], criteria);
    expect(c.candidate?.name).toBe('replica-2');
  });

  it('prefers a higher epoch over a higher LSN', () => {
    const c = chooseCandidate([node('replica-1', '99', { epoch: 2 }), node('replica-2', '95', { epoch: 3 })], criteria);
    expect(c.candidate?.name).toBe('replica-2');
  });

  it('lets a sync follower win a tie', () => {
    const c = chooseCandidate([node('replica-1', '98'), node('replica-2', '98', { sync: true })], criteria);
    expect(c.candidate?.name).toBe('replica-2');
  });

  it('breaks a full tie by name, deterministically', () => {
    const c = chooseCandidate([node('replica-2', '98'), node('replica-1', '98')], criteria);
    expect(c.candidate?.name).toBe('replica-1');
  });

  it('never promotes a node lagging more than maxLagOnFailover, and says so', () => {
    const c = chooseCandidate([node('replica-1', '89'), node('replica-2', '90')], criteria);
    expect(c.candidate?.name).toBe('replica-2');
    expect(c.excluded).toEqual([{ name: 'replica-1', why: 'lags 11 LSNs behind the last leader position 100 (maxLagOnFailover 10)' }]);
  });

  it('skips unhealthy, starting, seeding nodes and the failed leader, with a reason for each', () => {
    const c = chooseCandidate(
      [
        node('replica-0', '100', { role: 'leader' }),
        node('replica-1', '100', { healthy: false }),
        node('replica-2', '100', { role: 'seeding' }),
        node('replica-3', '100', { role: 'starting' }),
        node('replica-4', '50'),
      ],
      criteria,
    );
    expect(c.candidate).toBeNull();
    if (c.candidate !== null) throw new Error('unreachable');
    expect(c.reason).toBe(
      'no eligible candidate: replica-0 is the failed leader; replica-1 is unhealthy (no recent heartbeat); ' +
        'replica-2 is seeding, not a follower; replica-3 is starting, not a follower; ' +
        'replica-4 lags 50 LSNs behind the last leader position 100 (maxLagOnFailover 10)',
    );
  });

  it('with maxLagOnFailover 0 only a fully caught-up follower qualifies', () => {
    expect(chooseCandidate([node('replica-1', '99')], { ...criteria, maxLagOnFailover: 0 }).candidate).toBeNull();
    expect(chooseCandidate([node('replica-1', '100')], { ...criteria, maxLagOnFailover: 0 }).candidate?.name).toBe('replica-1');
  });

  it('compares LSNs beyond 2^53 exactly', () => {
    const c = chooseCandidate([node('replica-1', '9007199254740993'), node('replica-2', '9007199254740992')], { lastLeaderLsn: '9007199254740993', maxLagOnFailover: 0 });
    expect(c.candidate?.name).toBe('replica-1');
  });

  it('says when no replica is known at all', () => {
    const c = chooseCandidate([], criteria);
    expect(c.candidate).toBeNull();
    expect(c.candidate === null && c.reason).toBe('no eligible candidate: no replica is known');
  });
});
