/**
 * How much of the log a node may drop. Pure: the node feeds it positions and the oldest entries.
 *
 * The last `retainEntries` entries are kept even when every known follower has them (so a
 * restart catches up from the log, not a snapshot); entries some follower still needs are kept
 * too — but never beyond the hard limits `maxBytes` and `maxAgeMs`: a follower further behind is
 * re-seeded from a snapshot.
 */

export interface RetentionPolicy {
  retainEntries: number;
  maxBytes: number;
  maxAgeMs: number;
}

export interface RetentionInput {
  lastLsn: number;
  logBytes: number;
  /** Applied LSN of each follower the leader knows (stopped ones included). */
  followerApplied: number[];
  /** Oldest entries in order (a window is enough: at most this many are dropped per round). */
  oldest: Iterable<{ lsn: number; ts: number; bytes: number }>;
  nowMs: number;
}

/** Returns the LSN through which the log may be truncated (0: nothing). */
export function retentionPoint(input: RetentionInput, policy: RetentionPolicy): number {
  const needed = input.followerApplied.length ? Math.min(...input.followerApplied) : input.lastLsn;
  let soft = Math.min(needed, input.lastLsn - policy.retainEntries);
  let hard = 0;
  let bytes = input.logBytes;
  for (const e of input.oldest) {
    const tooOld = input.nowMs - e.ts > policy.maxAgeMs;
    const tooBig = bytes > policy.maxBytes;
    if (!tooOld && !tooBig) break;
    hard = e.lsn;
    bytes -= e.bytes;
  }
  soft = Math.max(0, soft);
  return Math.max(soft, hard);
}
