import { FakeClock } from '@flotilla/logging';
import { StreamBatcher } from './stream-batcher';

function harness(intervalMs = 2) {
  const clock = new FakeClock();
  const sent: { atMs: number; items: number[] }[] = [];
  const b = new StreamBatcher<number>(clock, intervalMs, (items) => sent.push({ atMs: clock.monotonic(), items }));
  return { clock, sent, b };
}

test('a group after a quiet spell goes at once; under load a group is held and the next interval of groups goes with it', () => {
  const { clock, sent, b } = harness(2);
  b.add([1, 2], false);
  expect(sent).toEqual([{ atMs: 0, items: [1, 2] }]);
  clock.advance(0.5);
  b.add([3], false);
  clock.advance(0.5);
  b.add([4, 5], false);
  expect(sent).toHaveLength(1);
  expect(b.heldCount).toBe(3);
  clock.advance(1.4);
  expect(sent).toHaveLength(1);
  clock.advance(0.1);
  expect(sent).toEqual([{ atMs: 0, items: [1, 2] }, { atMs: 2.5, items: [3, 4, 5] }]);
  expect(b.heldCount).toBe(0);
  // 1.9 ms after the last group: still busy, held.
  clock.advance(0.4);
  b.add([6], false);
  expect(sent).toHaveLength(2);
  clock.advance(2);
  expect(sent[2]).toEqual({ atMs: 4.9, items: [6] });
  // No commit for the interval: the next group goes at once again.
  clock.advance(2);
  b.add([7], false);
  expect(sent[3]).toEqual({ atMs: 6.9, items: [7] });
});

test('under steady load there is at most one message per interval, in order, nothing lost', () => {
  const { clock, sent, b } = harness(2);
  let n = 0;
  for (let i = 0; i < 100; i++) {
    b.add([n++, n++], false);
    clock.advance(0.3);
  }
  clock.advance(2);
  expect(sent.flatMap((s) => s.items)).toEqual(Array.from({ length: 200 }, (_, i) => i));
  for (let i = 1; i < sent.length; i++) expect(sent[i].atMs - sent[i - 1].atMs).toBeGreaterThanOrEqual(2);
  // 30 ms of commits every 0.3 ms: about one message per 2 ms instead of 100.
  expect(sent.length).toBeLessThanOrEqual(17);
});

test('an urgent group (a write waits on a follower) goes at once with everything held before it', () => {
  const { clock, sent, b } = harness(2);
  b.add([1], false);
  clock.advance(0.5);
  b.add([2], false);
  b.add([3], true);
  expect(sent.map((s) => s.items)).toEqual([[1], [2, 3]]);
  // The timer that was armed for [2] does not send an empty message later.
  clock.advance(10);
  expect(sent).toHaveLength(2);
});

test('interval 0 sends every group at once; flush sends what is held and drops the timer', () => {
  const zero = harness(0);
  zero.b.add([1], false);
  zero.b.add([2], false);
  expect(zero.sent.map((s) => s.items)).toEqual([[1], [2]]);

  const { clock, sent, b } = harness(5);
  b.add([1], false);
  b.add([2], false);
  b.flush();
  expect(sent.map((s) => s.items)).toEqual([[1], [2]]);
  b.add([3], false);
  expect(b.heldCount).toBe(1);
  b.flush();
  expect(sent.map((s) => s.items)).toEqual([[1], [2], [3]]);
  // The timer armed for [3] is gone: nothing more is sent, not even an empty message.
  clock.advance(100);
  expect(sent).toHaveLength(3);
  b.add([], true);
  expect(sent).toHaveLength(3);
});

test('a bad interval is refused', () => {
  const clock = new FakeClock();
  expect(() => new StreamBatcher(clock, -1, () => undefined)).toThrow(RangeError);
  expect(() => new StreamBatcher(clock, Number.NaN, () => undefined)).toThrow(RangeError);
});
