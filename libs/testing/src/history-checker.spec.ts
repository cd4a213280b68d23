import { AckedWrite, checkHistory, formatHistoryReport, HistoryInput, LogEntryInfo, ReplicaContent } from './history-checker';

const ack = (key: string, lsn: number, epoch: number, sentAtMs = lsn * 10, ackedAtMs = sentAtMs + 5): AckedWrite => ({
  key,
  value: `v-${key}`,
  idem: `idem-${key}`,
  lsn,
  epoch,
  sentAtMs,
  ackedAtMs,
});

/** A replica holding exactly these acknowledged writes, its log made of them. */
function replica(node: string, acks: AckedWrite[], epochs = [{ epoch: 1, startLsn: 1 }]): ReplicaContent {
  return {
    node,
    rows: acks.map((a) => ({ key: a.key, value: a.value })),
    log: acks.map((a): LogEntryInfo => ({ lsn: a.lsn, epoch: a.epoch, crc: a.lsn * 7 + a.epoch, idem: a.idem })),
    epochs,
  };
}

/** Epoch 1 on replica-0 (lsn 1..3), then epoch 2 on replica-1 (lsn 4..5). */
function failoverHistory(): HistoryInput {
  const acked = [ack('a', 1, 1), ack('b', 2, 1), ack('c', 3, 1), ack('d', 4, 2, 100), ack('e', 5, 2, 110)];
  const epochs = [
    { epoch: 1, startLsn: 1 },
    { epoch: 2, startLsn: 4 },
  ];
  return {
    acked,
    unacked: [],
    replicas: ['replica-0', 'replica-1', 'replica-2'].map((n) => replica(n, acked, epochs)),
    leaders: [
      { epoch: 1, leader: 'replica-0', atMs: 0 },
      { epoch: 2, leader: 'replica-1', atMs: 90 },
    ],
  };
}

describe('checkHistory', () => {
  test('a clean failover history passes, with per-epoch counts', () => {
    const report = checkHistory(failoverHistory());
    expect(report.violations).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.stats).toMatchObject({ acked: 5, replicas: 3, ackedByEpoch: { 1: 3, 2: 2 }, leadersByEpoch: { 1: ['replica-0'], 2: ['replica-1'] } });
    expect(formatHistoryReport(report)).toContain('checker: ok');
  });

  test('an acknowledged write missing on one replica fails', () => {
    const h = failoverHistory();
    h.replicas[2].rows = h.replicas[2].rows.filter((r) => r.key !== 'b');
    const report = checkHistory(h);
    expect(report.ok).toBe(false);
    expect(report.violations).toEqual(['acknowledged write missing: key b (epoch 1, lsn 2) missing on replica-2']);
  });

  test('an acknowledged write missing everywhere fails even when quarantined, unless the mode allows it', () => {
    const h = failoverHistory();
    for (const r of h.replicas) r.rows = r.rows.filter((x) => x.key !== 'c');
    h.quarantine = [{ node: 'replica-0', lsn: 3, epoch: 1, keys: ['c'] }];
    expect(checkHistory(h).violations).toEqual(['acknowledged write missing: key c (epoch 1, lsn 3) missing on replica-0, replica-1, replica-2 (it is in the quarantine)']);
    const allowed = checkHistory({ ...h, allowQuarantinedLoss: true });
    expect(allowed.violations).toEqual([]);
    expect(allowed.quarantinedAcks.map((a) => a.key)).toEqual(['c']);
  });

  test('quarantine allowance does not cover a write of the newest epoch, nor one quarantined at another position', () => {
    const h = failoverHistory();
    for (const r of h.replicas) r.rows = r.rows.filter((x) => x.key !== 'e' && x.key !== 'c');
    h.quarantine = [
      { node: 'replica-1', lsn: 5, epoch: 2, keys: ['e'] },
      { node: 'replica-0', lsn: 9, epoch: 1, keys: ['c'] },
    ];
    h.allowQuarantinedLoss = true;
    const report = checkHistory(h);
    expect(report.violations).toHaveLength(2);
    expect(report.violations[0]).toMatch(/^acknowledged write missing: key c /);
    expect(report.violations[1]).toMatch(/^acknowledged write missing: key e \(epoch 2, lsn 5\)/);
  });

  test('a key with two rows on a replica is applied twice', () => {
    const h = failoverHistory();
    h.replicas[1].rows.push({ key: 'd', value: 'v-d' });
    expect(checkHistory(h).violations).toEqual(['applied twice: key d has 2 rows on replica-1']);
  });

  test('one key acknowledged at two positions is applied twice', () => {
    const h = failoverHistory();
    h.acked.push({ ...ack('a', 6, 2, 120), key: 'a', value: 'v-a' });
    expect(checkHistory(h).violations).toContain('applied twice: key a acknowledged at (epoch 1, lsn 1) and at (epoch 2, lsn 6)');
  });

  test('an idempotency key in two log entries is applied twice', () => {
    const h = failoverHistory();
    h.replicas[0].log.push({ lsn: 6, epoch: 2, crc: 1, idem: 'idem-a' });
    expect(checkHistory(h).violations).toContain('applied twice: idempotency key idem-a in log entries 1 and 6 on replica-0');
  });

  test('two leaders in one epoch: seen in heartbeats', () => {
    const h = failoverHistory();
    h.leaders!.push({ epoch: 2, leader: 'replica-2', atMs: 95 });
    expect(checkHistory(h).violations).toEqual(['two leaders in one epoch: epoch 2 led by replica-1 and replica-2 (heartbeats)']);
  });

  test('two leaders in one epoch: two writes acknowledged at the same (epoch, lsn)', () => {
    const h = failoverHistory();
    const twin = { ...ack('x', 4, 2, 101), value: 'v-x' };
    h.acked.push(twin);
    for (const r of h.replicas) r.rows.push({ key: 'x', value: 'v-x' });
    const report = checkHistory(h);
    expect(report.violations).toContain('two leaders in one epoch: keys d and x both acknowledged at epoch 2, lsn 4');
    // And the log cannot hold both: x's entry is not there.
    expect(report.violations).toContain("acknowledged write overwritten: key x acknowledged at lsn 4 (idempotency key idem-x); replica-0's entry there has idem-d");
  });

  test('a write acknowledged by the deposed leader after the new epoch served fails', () => {
    const h = failoverHistory();
    // c (epoch 1) was first sent at 200, after d (epoch 2) was acknowledged at 105.
    h.acked[2] = { ...h.acked[2], sentAtMs: 200, ackedAtMs: 210 };
    expect(checkHistory(h).violations).toEqual([
      'write accepted by a deposed leader: key c acknowledged in epoch 1 (lsn 3) though first sent 95 ms after epoch 2 acknowledged key d',
    ]);
  });

  test('a late acknowledgement of a write sent before the failover is fine (a replayed answer)', () => {
    const h = failoverHistory();
    h.acked[2] = { ...h.acked[2], sentAtMs: 25, ackedAtMs: 500 };
    expect(checkHistory(h).violations).toEqual([]);
  });

  test('replicas whose logs disagree at a shared LSN fail', () => {
    const h = failoverHistory();
    h.replicas[2].log[3] = { ...h.replicas[2].log[3], crc: 999 };
    expect(checkHistory(h).violations).toEqual([`replicas differ: lsn 4: replica-0 has (epoch 2, crc 30), replica-2 has (epoch 2, crc 999)`, `replicas differ: lsn 4: replica-1 has (epoch 2, crc 30), replica-2 has (epoch 2, crc 999)`]);
  });

  test('an acknowledged write whose LSN holds another epoch in the final log was overwritten', () => {
    const h = failoverHistory();
    for (const r of h.replicas) r.log[2] = { lsn: 3, epoch: 2, crc: 5, idem: 'idem-c' };
    const report = checkHistory(h);
    expect(report.violations).toContain('acknowledged write overwritten: key c acknowledged at (epoch 1, lsn 3); replica-0 has epoch 2 there');
    expect(report.violations.some((x) => x.startsWith('epoch history: replica-0: lsn 3 of epoch 2 outside'))).toBe(true);
  });

  test('epoch start LSNs that differ between replicas fail', () => {
    const h = failoverHistory();
    h.replicas[1].epochs = [
      { epoch: 1, startLsn: 1 },
      { epoch: 2, startLsn: 3 },
    ];
    const report = checkHistory(h);
    expect(report.violations).toContain('replicas differ: epoch 2 starts at 4 on replica-0, at 3 on replica-1');
  });

  test('unacknowledged writes: applied once everywhere or nowhere is fine; on some replicas only, or a never-sent key, is not', () => {
    const h = failoverHistory();
    h.unacked = [
      { key: 'u1', value: 'v-u1' },
      { key: 'u2', value: 'v-u2' },
      { key: 'u3', value: 'v-u3' },
    ];
    for (const r of h.replicas) r.rows.push({ key: 'u1', value: 'v-u1' });
    expect(checkHistory(h).violations).toEqual([]);
    expect(checkHistory(h).stats.unackedApplied).toBe(1);
    h.replicas[0].rows.push({ key: 'u2', value: 'v-u2' });
    h.replicas[1].rows.push({ key: 'zz', value: 'v-zz' });
    const report = checkHistory(h);
    expect(report.violations).toContain('replicas differ: unacknowledged key u2 on replica-0 only');
    expect(report.violations).toContain('phantom write: key zz on replica-1 was never sent');
  });

  test('a wrong value is reported', () => {
    const h = failoverHistory();
    h.replicas[0].rows[0] = { key: 'a', value: 'other' };
    expect(checkHistory(h).violations).toEqual(['wrong value: key a on replica-0 is "other", acknowledged "v-a"']);
  });

  test('many violations of one kind are listed up to a limit, with the count of the rest', () => {
    const acked = Array.from({ length: 25 }, (_, i) => ack(`k${i}`, i + 1, 1));
    const report = checkHistory({ acked, replicas: [replica('replica-0', [])] });
    expect(report.violations).toHaveLength(11);
    expect(report.violations[10]).toBe('acknowledged write missing: … and 15 more');
  });
});
