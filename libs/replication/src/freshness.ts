/**
 * How fresh a follower's data provably is: what a bounded read (`maxLagMs`) is checked against.
 *
 * Every message of the leader carries a claim, "at my clock's `ts`, my last LSN was `lsn`": its
 * heartbeats, and each change-stream message (stamped when published). Once this replica has
 * applied `lsn`, it holds every write the leader had committed at `ts`, so any write it lacks was
 * committed (and acknowledged) after `ts`: its data is at most `now − ts` behind. The staleness is
 * the age of the newest claim this replica has satisfied (the closed timestamps of CockroachDB's
 * follower reads, at the granularity of LSNs).
 *
 * Why not "time since the leader was last heard from" (what `lagMs` reports): a message that waited
 * in a socket while this process was paused is heard late and looks fresh; a heartbeat that arrives
 * before the entries it announces (async entries are held up to streamBatchMs) says nothing of them.
 * A claim stays true however late it arrives, and counts only once its entries are applied.
 *
 * Clocks: `ts` is the leader's wall clock and `now` this replica's; they are assumed synchronised
 * (NTP) to well within the bounds clients ask for, as `lagMs` already assumes.
 */
export interface Claim {
  lsn: number;
  ts: number;
}

/** Claims kept while this replica is behind; beyond it the newest is merged into the last kept. */
export const FRESHNESS_CLAIMS_MAX = 1024;

export class FreshnessTracker {
  /** Leader-clock ms as of which this replica's data is known complete (-Infinity: never). */
  private freshAsOf = Number.NEGATIVE_INFINITY;
  /** Claims not yet satisfied, ascending by LSN. */
  private readonly claims: Claim[] = [];

  constructor(private readonly maxClaims = FRESHNESS_CLAIMS_MAX) {
    if (!Number.isInteger(maxClaims) || maxClaims < 1) throw new RangeError(`maxClaims ${maxClaims}`);
  }

  /** Records the leader's claim; `applied` is this replica's last applied LSN now. */
  claim(lsn: number, ts: number, applied: number): void {
    if (!Number.isFinite(ts) || !Number.isFinite(lsn)) return;
    if (lsn <= applied) {
      this.freshAsOf = Math.max(this.freshAsOf, ts);
      return;
    }
    const last = this.claims[this.claims.length - 1];
    if (last && lsn <= last.lsn) {
      // Satisfied no later than `last` is: true as of the later of the two times from then on.
      last.ts = Math.max(last.ts, ts);
      return;
    }
    if (this.claims.length >= this.maxClaims) {
      // Merged: `last`'s own claim is lost, so freshness is proven a little later (never wrongly).
      this.claims[this.claims.length - 1] = { lsn, ts: Math.max(ts, last.ts) };
      return;
    }
    this.claims.push({ lsn, ts });
  }

  /**
   * Milliseconds this replica's data may be behind the leader at `now` (this replica's wall clock),
   * given its last applied LSN; Infinity until a claim has been satisfied.
   */
  stalenessMs(now: number, applied: number): number {
    this.applied(applied);
    return this.freshAsOf === Number.NEGATIVE_INFINITY ? Number.POSITIVE_INFINITY : Math.max(0, now - this.freshAsOf);
  }

  /** Counts the claims `applied` satisfies (called after every apply, so few are ever kept). */
  applied(applied: number): void {
    let n = 0;
    while (n < this.claims.length && this.claims[n].lsn <= applied) {
      this.freshAsOf = Math.max(this.freshAsOf, this.claims[n].ts);
      n++;
    }
    if (n > 0) this.claims.splice(0, n);
  }

  /** Forgets everything: a new leader, or data rewound below what was claimed. */
  reset(): void {
    this.freshAsOf = Number.NEGATIVE_INFINITY;
    this.claims.length = 0;
  }

  /** Claims waiting to be satisfied (for tests and metrics). */
  get pendingClaims(): number {
    return this.claims.length;
  }
}
