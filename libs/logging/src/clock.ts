/**
 * Time and timers as a collaborator, so the core never reads the wall clock or sets timers by
 * itself and unit tests can drive it with {@link FakeClock}.
 */
export interface Clock {
  /** Wall clock, ms since the Unix epoch (for timestamps shown to people and lag in ms). */
  now(): number;
  /** Monotonic clock in ms, for deadlines (lease validity, timeouts). */
  monotonic(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  setInterval(fn: () => void, ms: number): Timer;
}

export interface Timer {
  cancel(): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
  setInterval(fn, ms) {
    const t = setInterval(fn, ms);
    return { cancel: () => clearInterval(t) };
  },
};

/** A clock that moves only when told to; timers fire in time order inside {@link advance}. */
export class FakeClock implements Clock {
  private wall: number;
  private mono = 0;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void; every?: number }>();
  constructor(startWallMs = 1_700_000_000_000) {
    this.wall = startWallMs;
  }
  now(): number {
    return this.wall + this.mono;
  }
  monotonic(): number {
    return this.mono;
  }
  setTimeout(fn: () => void, ms: number): Timer {
    const id = ++this.seq;
    this.timers.set(id, { at: this.mono + ms, fn });
    return { cancel: () => this.timers.delete(id) };
  }
  setInterval(fn: () => void, ms: number): Timer {
    const id = ++this.seq;
    this.timers.set(id, { at: this.mono + ms, fn, every: Math.max(1, ms) });
    return { cancel: () => this.timers.delete(id) };
  }
  /** This clock as seen from a host whose wall clock is `aheadMs` ahead (negative: behind). */
  offsetBy(aheadMs: number): Clock {
    return {
      now: () => this.now() + aheadMs,
      monotonic: () => this.monotonic(),
      setTimeout: (fn, ms) => this.setTimeout(fn, ms),
      setInterval: (fn, ms) => this.setInterval(fn, ms),
    };
  }
  /** Moves time forward by `ms`, firing due timers in order. */
  advance(ms: number): void {
    const end = this.mono + ms;
    for (;;) {
      let nextId = -1;
      let next: { at: number; fn: () => void; every?: number } | undefined;
      for (const [id, t] of this.timers) {
        if (t.at <= end && (!next || t.at < next.at)) {
          next = t;
          nextId = id;
        }
      }
      if (!next) break;
      this.mono = next.at;
      if (next.every) next.at += next.every;
      else this.timers.delete(nextId);
      next.fn();
    }
    this.mono = end;
  }
}
