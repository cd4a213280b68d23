import { FreshnessTracker } from './freshness';

describe('FreshnessTracker', () => {
  it('knows nothing until a claim is satisfied', () => {
    const f = new FreshnessTracker();
    expect(f.stalenessMs(1000, 0)).toBe(Number.POSITIVE_INFINITY);
    f.claim(5, 900, 0);
    expect(f.stalenessMs(1000, 4)).toBe(Number.POSITIVE_INFINITY);
    expect(f.stalenessMs(1000, 5)).toBe(100);
  });

  it('a claim already satisfied counts at once', () => {
    const f = new FreshnessTracker();
    f.claim(5, 900, 7);
    expect(f.stalenessMs(950, 7)).toBe(50);
    expect(f.pendingClaims).toBe(0);
  });

  it('a claim that arrives late still counts from when it was made, not from when it arrived', () => {
    // A heartbeat made at 1000 read at 1600 (the process was paused): 600 ms, not 0.
    const f = new FreshnessTracker();
    f.claim(10, 1000, 10);
    expect(f.stalenessMs(1600, 10)).toBe(600);
  });

  it('a claim ahead of the entries it announces counts only once they are applied', () => {
    const f = new FreshnessTracker();
    f.claim(10, 1000, 10);
    f.claim(12, 1500, 10); // heartbeat before the held entries 11..12
    expect(f.stalenessMs(1550, 10)).toBe(550);
    expect(f.stalenessMs(1550, 11)).toBe(550);
    expect(f.stalenessMs(1550, 12)).toBe(50);
  });

  it('staleness grows while nothing new is satisfied', () => {
    const f = new FreshnessTracker();
    f.claim(3, 100, 3);
    expect(f.stalenessMs(150, 3)).toBe(50);
    expect(f.stalenessMs(450, 3)).toBe(350);
  });

  it('never goes back to an older time, and never below 0 (a leader clock slightly ahead)', () => {
    const f = new FreshnessTracker();
    f.claim(3, 500, 3);
    f.claim(2, 100, 3);
    expect(f.stalenessMs(400, 3)).toBe(0);
    expect(f.stalenessMs(700, 3)).toBe(200);
  });

  it('a claim for an LSN already claimed later moves that claim to the later time', () => {
    const f = new FreshnessTracker();
    f.claim(10, 100, 0);
    f.claim(8, 300, 0);
    expect(f.pendingClaims).toBe(1);
    expect(f.stalenessMs(400, 9)).toBe(Number.POSITIVE_INFINITY);
    expect(f.stalenessMs(400, 10)).toBe(100);
  });

  it('kept claims are bounded; merging only makes it more cautious', () => {
    const f = new FreshnessTracker(3);
    for (let i = 1; i <= 10; i++) f.claim(i * 10, i * 100, 0);
    expect(f.pendingClaims).toBe(3);
    // 10 and 20 are kept as they were; 30's claim was merged into the last (100 at 1000).
    expect(f.stalenessMs(1000, 20)).toBe(800);
    expect(f.stalenessMs(1000, 99)).toBe(800);
    expect(f.stalenessMs(1000, 100)).toBe(0);
  });

  it('applied() counts what it satisfies at once, so claims do not pile up between bounded reads', () => {
    const f = new FreshnessTracker();
    for (let lsn = 1; lsn <= 5; lsn++) f.claim(lsn, lsn * 10, 0);
    f.applied(3);
    expect(f.pendingClaims).toBe(2);
    expect(f.stalenessMs(100, 3)).toBe(70);
  });

  it('reset forgets what was known', () => {
    const f = new FreshnessTracker();
    f.claim(5, 900, 5);
    f.claim(9, 950, 5);
    f.reset();
    expect(f.stalenessMs(1000, 9)).toBe(Number.POSITIVE_INFINITY);
    expect(f.pendingClaims).toBe(0);
  });

  it('ignores claims without a usable time or LSN', () => {
    const f = new FreshnessTracker();
    f.claim(5, Number.NaN, 5);
    f.claim(Number.NaN, 900, 5);
    expect(f.stalenessMs(1000, 5)).toBe(Number.POSITIVE_INFINITY);
  });

  it('refuses a bound below 1', () => {
    expect(() => new FreshnessTracker(0)).toThrow(RangeError);
  });
});
