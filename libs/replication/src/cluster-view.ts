/**
 * The cluster as seen from its heartbeats: which nodes exist, which are healthy, who leads, and
 * which node may serve a read at a given consistency level. Used by the gateway (routing,
 * GET /v1/cluster, /readyz) and usable by anything else that listens to `hb.*`.
 *
 * Plain TypeScript without I/O: the caller decodes heartbeats at the boundary and feeds them in;
 * time comes from the injected {@link Clock} (monotonic), so tests drive it with a FakeClock.
 *
 * Invariants:
 * - A node is healthy iff its last heartbeat arrived less than `staleAfterMs` ago (receiver's
 *   monotonic clock; the sender's wall clock is never trusted for liveness).
 * - The leader is a healthy node with role `leader` whose epoch is the highest epoch among healthy
 *   nodes. A self-proclaimed leader of an older epoch (a deposed leader that has not noticed yet)
 *   is never returned; two healthy leaders of the same highest epoch mean "no known leader".
 * - Reads are only ever routed to healthy nodes that are the current leader or followers without a
 *   reported problem; `starting` and `seeding` nodes and deposed leaders never serve reads.
 */
import type { Heartbeat } from '@flotilla/protocol';
import type { Clock } from '@flotilla/logging';

/** Default heartbeat interval of the replicas (ms); matches config DEFAULTS.heartbeatIntervalMs. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 250;
/** A node missing this many heartbeats in a row is unhealthy. */
export const MISSED_HEARTBEATS_STALE = 3;
/** A node silent for this long is dropped from the view (scaled-down or renamed pods). 5 minutes. */
export const DEFAULT_FORGET_AFTER_MS = 5 * 60 * 1000;

/** Consistency levels of `POST /v1/query` (see DESIGN "Public contract"). */
export const READ_CONSISTENCIES = ['any', 'strong', 'read-your-writes', 'bounded'] as const;
export type ReadConsistency = (typeof READ_CONSISTENCIES)[number];

/** One node as listed by GET /v1/cluster. LSNs are decimal strings. */
export interface NodeView {
  name: string;
  role: string;
  epoch: number;
  lsn: string;
  appliedLsn: string;
  /** Highest LSN on the node's disk (what failover and semi-sync count); its lsn when it does not say. */
  flushedLsn: string;
  lagMs: number;
  sync: boolean;
  healthy: boolean;
  version: string;
  mode: string;
  logFormat: string;
  /** Why the node cannot serve, as it reports it; null when it reports none. */
  problem: string | null;
}

/** Cluster-wide facts derived from the heartbeats (null when nothing is known yet). */
export interface ClusterSummary {
  /** Epoch of the known leader, else the highest epoch among healthy nodes, else 0. */
  epoch: number;
  leader: string | null;
  /** Replication mode and log format as the leader reports them (else any healthy node). */
  mode: string | null;
  logFormat: string | null;
}

/** What a read needs from the node that serves it. */
export interface ReadRequirements {
  consistency: ReadConsistency;
  /** read-your-writes: the LSN the client has written (decimal string). */
  minLsn?: string;
  /** bounded: the largest acceptable replication lag in ms. */
  maxLagMs?: number;
  /** Node names not to pick (e.g. ones that just failed to answer). */
  exclude?: readonly string[];
}

export interface ClusterViewOptions {
  clock: Clock;
  /** A node whose last heartbeat is at least this old is unhealthy. Default 3 × 250 ms. */
  staleAfterMs?: number;
  /** A node silent for this long disappears from {@link ClusterView.nodes}. Default 5 minutes. */
  forgetAfterMs?: number;
}

interface Entry {
  hb: Heartbeat;
  /** Monotonic receive time of the last heartbeat. */
  seenAt: number;
}

export class ClusterView {
  readonly staleAfterMs: number;
  readonly forgetAfterMs: number;
  private readonly clock: Clock;
  private readonly entries = new Map<string, Entry>();
  /** When the first heartbeat was heard (monotonic), if one was. */
  private firstHeardMono: number | undefined;
  /** Round-robin position, advanced on every pick that has a choice. */
  private turn = 0;

  constructor(options: ClusterViewOptions) {
    this.clock = options.clock;
    this.staleAfterMs = options.staleAfterMs ?? MISSED_HEARTBEATS_STALE * DEFAULT_HEARTBEAT_INTERVAL_MS;
    this.forgetAfterMs = options.forgetAfterMs ?? DEFAULT_FORGET_AFTER_MS;
    if (!(this.staleAfterMs > 0)) throw new RangeError(`staleAfterMs must be > 0, got ${this.staleAfterMs}`);
    if (!(this.forgetAfterMs >= this.staleAfterMs)) {
      throw new RangeError(`forgetAfterMs (${this.forgetAfterMs}) must be >= staleAfterMs (${this.staleAfterMs})`);
    }
  }

  /**
   * Records a heartbeat that was already decoded and validated (decodeHeartbeat). The newest
   * heartbeat of a node replaces the previous one, whatever its content.
   */
  ingest(hb: Heartbeat): void {
    const now = this.clock.monotonic();
    this.firstHeardMono ??= now;
    this.entries.set(hb.node, { hb, seenAt: now });
  }

  /**
   * Whether every live node has had time to be heard: `staleAfterMs` (several heartbeat intervals)
   * since the first heartbeat arrived, whenever the connection that brought it was made.
   */
  hasHeardEveryLiveNode(): boolean {
    return this.firstHeardMono !== undefined && this.clock.monotonic() - this.firstHeardMono >= this.staleAfterMs;
  }

  /** Every known node, sorted by name, with `healthy` computed now. Forgets long-silent nodes. */
  nodes(): NodeView[] {
    this.forgetSilent();
    return [...this.entries.values()].sort((a, b) => compareNames(a.hb.node, b.hb.node)).map((e) => this.toView(e));
  }

  /** The current leader (see the class invariants), or undefined when none is known. */
  leader(): NodeView | undefined {
    const e = this.leaderEntry();
    return e ? this.toView(e) : undefined;
  }

  private leaderEntry(): Entry | undefined {
    const healthy = this.healthyEntries();
    if (healthy.length === 0) return undefined;
    const topEpoch = Math.max(...healthy.map((e) => e.hb.epoch));
    const leaders = healthy.filter((e) => e.hb.role === 'leader' && e.hb.epoch === topEpoch);
    return leaders.length === 1 ? leaders[0] : undefined;
  }

  /** Epoch, leader, mode and log format of the cluster as the heartbeats tell. */
  summary(): ClusterSummary {
    const leader = this.leader();
    const healthy = this.healthyEntries();
    const source = leader ?? (healthy.length > 0 ? this.toView(healthy[0]) : undefined);
    return {
      epoch: leader?.epoch ?? (healthy.length > 0 ? Math.max(...healthy.map((e) => e.hb.epoch)) : 0),
      leader: leader?.name ?? null,
      mode: source?.mode ?? null,
      logFormat: source?.logFormat ?? null,
    };
  }

  /**
   * The node that should serve a read, or undefined when no node qualifies:
   * - `any`: round-robin over the healthy serving nodes (followers and the leader).
   * - `strong`: the leader.
   * - `read-your-writes`: round-robin over followers whose appliedLsn >= minLsn; else the most
   *   advanced follower (the caller asks it to wait for minLsn, then falls back to the leader);
   *   else the leader. Without minLsn it is `any`.
   * - `bounded`: round-robin over serving nodes with lagMs <= maxLagMs (the leader has lag 0);
   *   else the leader. Without maxLagMs it is `any`.
   * Nodes in `exclude` are never returned.
   */
  pickForRead(req: ReadRequirements): string | undefined {
    const exclude = new Set(req.exclude ?? []);
    const leader = this.leader();
    const leaderName = leader && !exclude.has(leader.name) ? leader.name : undefined;
    const followers = this.servingFollowers().filter((e) => !exclude.has(e.hb.node));
    const all = leaderName ? [...followers.map((e) => e.hb.node), leaderName].sort(compareNames) : followers.map((e) => e.hb.node);
    switch (req.consistency) {
      case 'strong':
        return leaderName;
      case 'any':
        return this.roundRobin(all);
      case 'read-your-writes': {
        if (req.minLsn === undefined) return this.roundRobin(all);
        const min = BigInt(req.minLsn);
        const caughtUp = followers.filter((e) => BigInt(e.hb.appliedLsn) >= min).map((e) => e.hb.node);
        if (caughtUp.length > 0) return this.roundRobin(caughtUp);
        // Heartbeats are up to one interval old: the most advanced follower has probably caught up
        // by now, and asking it (with a short wait) keeps reads off the leader.
        const best = [...followers].sort((a, b) => compareLsn(b.hb.appliedLsn, a.hb.appliedLsn) || compareNames(a.hb.node, b.hb.node))[0];
        return best?.hb.node ?? leaderName;
      }
      case 'bounded': {
        if (req.maxLagMs === undefined) return this.roundRobin(all);
        const maxLagMs = req.maxLagMs;
        const fresh = followers.filter((e) => e.hb.lagMs <= maxLagMs).map((e) => e.hb.node);
        if (leaderName) fresh.push(leaderName);
        fresh.sort(compareNames);
        return fresh.length > 0 ? this.roundRobin(fresh) : leaderName;
      }
      default: {
        const never: never = req.consistency;
        throw new TypeError(`unknown consistency ${String(never)}`);
      }
    }
  }

  private roundRobin(names: string[]): string | undefined {
    if (names.length === 0) return undefined;
    const name = names[this.turn % names.length];
    this.turn = (this.turn + 1) % Number.MAX_SAFE_INTEGER;
    return name;
  }

  /** Healthy followers that report no problem, sorted by name. */
  private servingFollowers(): Entry[] {
    return this.healthyEntries().filter((e) => e.hb.role === 'follower' && !e.hb.problem);
  }

  /** Healthy entries sorted by name. */
  private healthyEntries(): Entry[] {
    return [...this.entries.values()].filter((e) => this.isHealthy(e)).sort((a, b) => compareNames(a.hb.node, b.hb.node));
  }

  private isHealthy(e: Entry): boolean {
    return this.clock.monotonic() - e.seenAt < this.staleAfterMs;
  }

  private forgetSilent(): void {
    const now = this.clock.monotonic();
    for (const [name, e] of this.entries) {
      if (now - e.seenAt >= this.forgetAfterMs) this.entries.delete(name);
    }
  }

  private toView(e: Entry): NodeView {
    const hb = e.hb;
    // The leader decides who is synchronous: its heartbeat is authoritative, and a follower that
    // stopped heartbeating (paused, dead) would otherwise go on claiming `sync` forever.
    const le = this.leaderEntry();
    const leaderSet = le && le !== e ? le.hb.syncSet : undefined;
    const sync = leaderSet ? leaderSet.includes(hb.node) : hb.sync;
    return {
      name: hb.node,
      role: hb.role,
      epoch: hb.epoch,
      lsn: hb.lsn,
      appliedLsn: hb.appliedLsn,
      flushedLsn: typeof hb.flushedLsn === 'string' ? hb.flushedLsn : hb.lsn,
      lagMs: hb.lagMs,
      sync,
      healthy: this.isHealthy(e),
      version: hb.version,
      mode: hb.mode,
      logFormat: hb.logFormat,
      problem: hb.problem ?? null,
    };
  }
}

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareLsn(a: string, b: string): number {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
