import { restartDelayMs, RESTART_BACKOFF_MAX_MS, RESTART_BACKOFF_MIN_MS } from './backoff';

describe('restartDelayMs', () => {
  it('doubles from 200ms and stops at 5s', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 40].map((a) => restartDelayMs(a))).toEqual([200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    expect(RESTART_BACKOFF_MIN_MS).toBe(200);
    expect(RESTART_BACKOFF_MAX_MS).toBe(5000);
  });

  it('honours other bounds', () => {
    expect(restartDelayMs(0, 10, 35)).toBe(10);
    expect(restartDelayMs(2, 10, 35)).toBe(35);
  });

  it('rejects a negative or fractional attempt', () => {
    expect(() => restartDelayMs(-1)).toThrow(RangeError);
    expect(() => restartDelayMs(1.5)).toThrow(/non-negative integer/);
  });
});
