/**
 * Choice of the next leader after a failure (DESIGN "Failover", step 2): among healthy followers,
 * the highest (epoch, flushed LSN); a sync follower wins ties; nobody further behind the last
 * known leader position than `maxLagOnFailover` LSNs is promoted. When nobody qualifies, the
 * answer says why, node by node, so the cluster can wait and tell the operator what it waits for.
 *
 * Pure function: no clock, no I/O.
 */

/** What the choice needs to know of one node (from its last heartbeat). */
export interface CandidateNode {
  name: string;
  /** Heartbeat role: only `follower` can be promoted. */
  role: string;
  epoch: number;
  /** Durable position, decimal string. */
  flushedLsn: string;
  sync: boolean;
  /** Heartbeat within failureTimeoutMs. */
  healthy: boolean;
}

export interface CandidateCriteria {
  /** Last LSN the failed leader was known to have (decimal string); '0' when unknown. */
  lastLeaderLsn: string;
  /** Largest acceptable lag behind lastLeaderLsn, in LSNs. */
  maxLagOnFailover: number;
  /** Nodes never to choose (the failed leader itself). */
  exclude?: readonly string[];
}

/** Why one node was not chosen. */
export interface Exclusion {
  name: string;
  why: string;
}

export type CandidateChoice =
  | { candidate: CandidateNode; excluded: Exclusion[] }
  | { candidate: null; excluded: Exclusion[]; reason: string };

/**
 * The node to promote, or `candidate: null` with `reason` naming every node and why it was
 * excluded (`"no eligible candidate: replica-1 lags 40 LSNs (max 10); replica-2 is unhealthy"`).
 * Among eligible nodes: highest epoch, then highest flushed LSN, then sync before async, then
 * name (so the choice is deterministic).
 */
export function chooseCandidate(nodes: readonly CandidateNode[], criteria: CandidateCriteria): CandidateChoice {
  const exclude = new Set(criteria.exclude ?? []);
  const leaderLsn = toBigInt(criteria.lastLeaderLsn);
  const excluded: Exclusion[] = [];
  const eligible: CandidateNode[] = [];
  for (const n of [...nodes].sort((a, b) => compareText(a.name, b.name))) {
    const why = exclusionOf(n, exclude, leaderLsn, criteria.maxLagOnFailover);
    if (why) excluded.push({ name: n.name, why });
    else eligible.push(n);
  }
  if (eligible.length === 0) {
    const detail = excluded.length > 0 ? excluded.map((e) => `${e.name} ${e.why}`).join('; ') : 'no replica is known';
    return { candidate: null, excluded, reason: `no eligible candidate: ${detail}` };
  }
  eligible.sort(
    (a, b) =>
      b.epoch - a.epoch ||
      compareBig(toBigInt(b.flushedLsn), toBigInt(a.flushedLsn)) ||
      Number(b.sync) - Number(a.sync) ||
      compareText(a.name, b.name),
  );
  return { candidate: eligible[0], excluded };
}

function exclusionOf(n: CandidateNode, exclude: Set<string>, leaderLsn: bigint, maxLag: number): string | undefined {
  if (exclude.has(n.name)) return 'is the failed leader';
  if (!n.healthy) return 'is unhealthy (no recent heartbeat)';
  if (n.role !== 'follower') return `is ${n.role}, not a follower`;
  const lag = leaderLsn - toBigInt(n.flushedLsn);
  if (lag > BigInt(maxLag)) return `lags ${lag} LSNs behind the last leader position ${leaderLsn} (maxLagOnFailover ${maxLag})`;
  return undefined;
}

function toBigInt(lsn: string): bigint {
  return /^(0|[1-9][0-9]*)$/.test(lsn) ? BigInt(lsn) : 0n;
}

function compareBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
