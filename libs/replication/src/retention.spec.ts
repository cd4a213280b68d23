import { retentionPoint } from './retention';

const policy = { retainEntries: 10, maxBytes: 1000, maxAgeMs: 60_000 };
const entries = (from: number, to: number, ts = 0, bytes = 10) =>
  Array.from({ length: to - from + 1 }, (_, i) => ({ lsn: from + i, ts, bytes }));

test('keeps whichever is more: what every follower still needs, or the last retainEntries', () => {
  const r = retentionPoint({ lastLsn: 100, logBytes: 1000 - 1, followerApplied: [95, 40], oldest: entries(1, 100, 1000), nowMs: 2000 }, policy);
  expect(r).toBe(40);
  const all = retentionPoint({ lastLsn: 100, logBytes: 999, followerApplied: [100, 100], oldest: entries(1, 100, 1000), nowMs: 2000 }, policy);
  expect(all).toBe(90);
});

test('hard limits win over a follower that is far behind', () => {
  // 200 entries of 10 bytes = 2000 bytes > 1000: the oldest 100 must go although a follower is at 5.
  const r = retentionPoint({ lastLsn: 200, logBytes: 2000, followerApplied: [5], oldest: entries(1, 200, 1000), nowMs: 2000 }, policy);
  expect(r).toBe(100);
  const old = retentionPoint({ lastLsn: 3, logBytes: 30, followerApplied: [0], oldest: entries(1, 3, 0), nowMs: 120_000 }, policy);
  expect(old).toBe(3);
});

test('nothing to drop on a short log', () => {
  expect(retentionPoint({ lastLsn: 5, logBytes: 50, followerApplied: [], oldest: entries(1, 5, 0), nowMs: 10 }, policy)).toBe(0);
});
