import { TTL_MS_ANNOTATION, toRecord } from './kubernetes-lease';

describe('toRecord (Kubernetes Lease → LeaseRecord)', () => {
  const renewTime = '2026-11-27T14:00:00.123456Z';

  test('maps holderIdentity, leaseTransitions, renewTime and resourceVersion', () => {
    const record = toRecord({
      metadata: { name: 'flotilla-leader', resourceVersion: '42', annotations: { [TTL_MS_ANNOTATION]: '2500' } },
      spec: { holderIdentity: 'replica-1', leaseTransitions: 7, leaseDurationSeconds: 3, renewTime: renewTime as unknown as Date },
    });
    expect(record).toEqual({ holder: 'replica-1', epoch: 7, renewedAtMs: Date.parse('2026-11-27T14:00:00.123Z'), ttlMs: 2500, revision: '42' });
  });

  test('without the ttl-ms annotation the TTL is leaseDurationSeconds', () => {
    const record = toRecord({ metadata: { resourceVersion: '1' }, spec: { holderIdentity: 'a', leaseDurationSeconds: 15 } });
    expect(record.ttlMs).toBe(15_000);
  });

  test('a malformed annotation falls back to leaseDurationSeconds', () => {
    const record = toRecord({ metadata: { resourceVersion: '1', annotations: { [TTL_MS_ANNOTATION]: 'soon' } }, spec: { leaseDurationSeconds: 2 } });
    expect(record.ttlMs).toBe(2_000);
  });

  test('an empty or absent holderIdentity is a released lease; absent transitions are epoch 0', () => {
    expect(toRecord({ metadata: { resourceVersion: '3' }, spec: { holderIdentity: '' } })).toMatchObject({ holder: null, epoch: 0, renewedAtMs: 0 });
    expect(toRecord({ metadata: { resourceVersion: '3' } })).toMatchObject({ holder: null, epoch: 0 });
  });

  test('acquireTime stands in for a missing renewTime', () => {
    const record = toRecord({ metadata: { resourceVersion: '5' }, spec: { holderIdentity: 'a', acquireTime: renewTime as unknown as Date } });
    expect(record.renewedAtMs).toBe(Date.parse('2026-11-27T14:00:00.123Z'));
  });
});
