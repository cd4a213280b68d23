/**
 * Which followers are synchronous, and when a write may be acknowledged. Pure: the leader feeds it
 * acks and ticks and it answers through callbacks; no timers, no I/O.
 *
 * - `async`: nobody waits.
 * - `semi-sync`: exactly `syncFollowers` followers form the sync set; a write is acknowledged once
 *   every member has flushed it. A member that is unavailable, or slower than `syncTimeoutMs` on a
 *   waiting write, is replaced by the most caught-up other follower.
 * - `sync`: every follower seen this term is in the set.
 * When nobody can replace a missing member: `block` fails the writes that waited `syncTimeoutMs`
 * (503 NOT_ENOUGH_REPLICAS: never reported committed), `degrade` acknowledges without it and says so
 * loudly until a follower catches up again.
 * Per request, `durability` can ask for more copies than the cluster default, never fewer.
 */
import type { ReplicationMode, SyncPolicy } from '@flotilla/config';
import type { Logger } from '@flotilla/logging';
import { Durability, ErrorCode, FlotillaError } from '@flotilla/protocol';

export interface SyncSettings {
  mode: ReplicationMode;
  syncFollowers: number;
  syncTimeoutMs: number;
  syncPolicy: SyncPolicy;
}

interface Follower {
  node: string;
  flushed: number;
  lastAckMono: number;
  /** On the live stream (not catching up): only such a follower is made synchronous. */
  live: boolean;
}

export type WaitOutcome = { ok: true } | { ok: false; reason: string };

interface Waiter {
  lsn: number;
  /** Followers (any) that must have flushed, beyond the sync set. */
  anyRequired: number;
  /** True when the cluster's sync set must have flushed. */
  needsSyncSet: boolean;
  /** A real copy even while degraded (a settings entry: its confirmation must mean a copy). */
  strict: boolean;
  sinceMono: number;
  done: (o: WaitOutcome) => void;
}

export class SyncTracker {
  private followers = new Map<string, Follower>();
  private syncSet: string[] = [];
  private waiters: Waiter[] = [];
  private degradedSince: number | null = null;
  private lastCommitted = 0;
  private committedAtLastTick = 0;

  constructor(
    private settings: SyncSettings,
    private readonly log: Logger,
    /** Called when the degraded state changes (for metrics and heartbeats). */
    private readonly onChange: () => void = () => undefined,
  ) {}

  get members(): readonly string[] {
    return this.syncSet;
  }

  get degraded(): boolean {
    return this.degradedSince !== null;
  }

  get mode(): ReplicationMode {
    return this.settings.mode;
  }

  get current(): SyncSettings {
    return { ...this.settings };
  }

  /** Changes mode at run time; waiting writes are re-evaluated under the new rules. */
  configure(settings: SyncSettings, nowMono: number): void {
    const before = this.settings;
    this.settings = settings;
    // The same mode keeps its members: in sync mode a follower that is away still counts (a
    // re-posted setting must not drop it), in semi-sync the set is only trimmed or extended.
    if (settings.mode !== before.mode) this.syncSet = [];
    this.log.info('replication mode set', { ...settings });
    // A write that waited for the sync set under the old mode waits for it only if the new mode has one.
    for (const w of this.waiters) w.needsSyncSet = settings.mode !== 'async';
    if (this.degradedSince !== null && (settings.mode === 'async' || settings.syncPolicy === 'block')) {
      // async: nothing left to degrade from. block: the operator wants no write acknowledged without
      // its copy from now on, so the next ones wait (and fail after syncTimeoutMs) again.
      this.degradedSince = null;
      this.log.warn(settings.mode === 'async' ? 'replication no longer degraded: the mode is now async' : 'replication no longer degraded: the policy is now block', {});
      this.onChange();
    }
    this.rebalance(nowMono, new Set());
    this.release();
  }

  /** How many follower copies a request needs beyond the sync set: never fewer than the default. */
  anyRequiredFor(durability: Durability | undefined): number {
    if (durability === undefined || durability === 'leader') return 0;
    if (durability === 'sync') return 1;
    return Math.max(0, durability.replicas - 1);
  }

  /** True when a write must wait at all. */
  mustWait(durability: Durability | undefined): boolean {
    return this.settings.mode !== 'async' || this.anyRequiredFor(durability) > 0;
  }

  /** The leader committed up to `lsn` (used to tell when a follower has caught up). */
  noteCommitted(lsn: number): void {
    this.lastCommitted = Math.max(this.lastCommitted, lsn);
  }

  onAck(node: string, flushed: number, nowMono: number, live = true): void {
    const f = this.followers.get(node);
    if (f) {
      // As reported, not the highest ever: a follower that rewound or was re-seeded reports a lower
      // position, and the copies it had above it are gone (acks of one follower arrive in order).
      f.flushed = flushed;
      f.lastAckMono = nowMono;
      if (f.live !== live) {
        f.live = live;
        this.rebalance(nowMono, new Set());
      }
    } else {
      this.followers.set(node, { node, flushed, lastAckMono: nowMono, live });
      this.rebalance(nowMono, new Set());
    }
    this.release();
  }

  /** Waits until `lsn` is durable as the mode and `durability` demand; calls `done` exactly once. */
  wait(lsn: number, durability: Durability | undefined, nowMono: number, done: (o: WaitOutcome) => void, options: { strict?: boolean } = {}): void {
    const w: Waiter = { lsn, anyRequired: this.anyRequiredFor(durability), needsSyncSet: this.settings.mode !== 'async', strict: options.strict === true, sinceMono: nowMono, done };
    if (this.satisfied(w)) {
      done({ ok: true });
      return;
    }
    // LSNs arrive in order except replays of idempotent requests: keep the list sorted.
    let i = this.waiters.length;
    while (i > 0 && this.waiters[i - 1].lsn > lsn) i--;
    this.waiters.splice(i, 0, w);
  }

  /** Fails every waiting write (the leader is stepping down): none was acknowledged. */
  abortAll(reason: string): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.done({ ok: false, reason });
  }

  /** Time passes: replace unavailable or slow sync followers; apply the timeout policy. */
  tick(nowMono: number): void {
    const timeout = this.settings.syncTimeoutMs;
    const oldest = this.waiters[0];
    const slow = new Set<string>();
    if (oldest && nowMono - oldest.sinceMono >= timeout) {
      for (const m of this.syncSet) if ((this.followers.get(m)?.flushed ?? 0) < oldest.lsn) slow.add(m);
      for (const f of this.followers.values()) if (f.flushed < oldest.lsn && nowMono - f.lastAckMono >= timeout) slow.add(f.node);
    }
    if (this.degradedSince !== null && this.settings.mode === 'semi-sync' && nowMono - this.degradedSince >= timeout) {
      // Degraded, no write waits, so the check above never fires: a member still behind gives way to
      // a follower that has caught up, or the degradation would last as long as that member lags.
      const caughtUp = [...this.followers.values()].some((f) => f.live && this.available(f, nowMono) && !this.syncSet.includes(f.node) && f.flushed >= this.committedAtLastTick);
      if (caughtUp) for (const m of this.syncSet) if ((this.followers.get(m)?.flushed ?? 0) < this.committedAtLastTick) slow.add(m);
    }
    this.rebalance(nowMono, slow);
    this.release();
    this.committedAtLastTick = this.lastCommitted;
    // Whatever still waits past the timeout has nobody to wait for.
    const expired = this.waiters.filter((w) => nowMono - w.sinceMono >= timeout);
    if (expired.length === 0) return;
    // `degrade` gives up the cluster's sync copy, never the copies a request asked for itself
    // (durability "sync" or {replicas}): those still fail, the others are acknowledged degraded.
    const degrade = this.settings.syncPolicy === 'degrade';
    if (degrade && expired.some((w) => w.anyRequired === 0) && this.degradedSince === null) {
      this.degradedSince = nowMono;
      this.log.warn('replication degraded to async: no follower can be synchronous', {
        mode: this.settings.mode,
        syncFollowers: this.settings.syncFollowers,
        waiting: this.waiters.length,
      });
      this.onChange();
    }
    const failing = degrade ? expired.filter((w) => w.anyRequired > 0 || w.strict) : expired;
    this.waiters = this.waiters.filter((w) => !failing.includes(w));
    for (const w of failing) {
      w.done({ ok: false, reason: `no ${w.anyRequired > 0 ? `${w.anyRequired} follower(s)` : 'synchronous follower'} flushed LSN ${w.lsn} within ${timeout} ms` });
    }
    if (degrade) this.release();
  }

  private available(f: Follower, nowMono: number): boolean {
    return nowMono - f.lastAckMono < this.settings.syncTimeoutMs;
  }

  /** Keeps the sync set at its target size with available followers, most caught-up first. */
  private rebalance(nowMono: number, slow: Set<string>): void {
    const { mode } = this.settings;
    let next: string[];
    if (mode === 'async') next = [];
    else {
      const usable = [...this.followers.values()].filter((f) => f.live && this.available(f, nowMono) && !slow.has(f.node));
      if (mode === 'sync') {
        next = usable.map((f) => f.node);
        // In sync mode a follower that went away still counts: writes wait for it (or the policy applies).
        for (const n of this.syncSet) if (!next.includes(n)) next.push(n);
      } else {
        const keep = this.syncSet.filter((n) => usable.some((f) => f.node === n));
        const candidates = usable.filter((f) => !keep.includes(f.node)).sort((a, b) => b.flushed - a.flushed);
        next = keep.slice(0, this.settings.syncFollowers);
        while (next.length < this.settings.syncFollowers && candidates.length > 0) next.push(candidates.shift()!.node);
        // Nobody to replace a slow member: keep it (it may come back) rather than shrink the set.
        for (const n of this.syncSet) if (next.length < this.settings.syncFollowers && !next.includes(n)) next.push(n);
      }
    }
    next.sort();
    if (next.join(',') !== this.syncSet.join(',')) {
      this.log.info('sync followers changed', { from: this.syncSet, to: next, slow: [...slow] });
      this.syncSet = next;
      this.onChange();
    }
  }

  private satisfied(w: Waiter): boolean {
    if (w.anyRequired > 0) {
      let n = 0;
      for (const f of this.followers.values()) if (f.flushed >= w.lsn) n++;
      if (n < w.anyRequired) return false;
    }
    if (!w.needsSyncSet || (this.degraded && !w.strict)) return true;
    if (this.settings.mode === 'semi-sync' && this.syncSet.length < this.settings.syncFollowers) return false;
    if (this.syncSet.length === 0) return false;
    return this.syncSet.every((m) => (this.followers.get(m)?.flushed ?? 0) >= w.lsn);
  }

  /** Acknowledges every waiting write that is now durable enough; leaves degraded when caught up. */
  private release(): void {
    if (this.degradedSince !== null && this.settings.mode !== 'async') {
      const fullSet = this.settings.mode === 'sync' ? this.syncSet.length > 0 : this.syncSet.length >= this.settings.syncFollowers;
      const members = this.syncSet.map((m) => this.followers.get(m));
      // Caught up: at most one tick behind the leader, and heard from since the degradation.
      if (fullSet && members.every((f) => f && f.flushed >= this.committedAtLastTick && f.lastAckMono > this.degradedSince!)) {
        this.degradedSince = null;
        this.log.warn('replication no longer degraded: synchronous followers are back', { sync: this.syncSet });
        this.onChange();
      }
    }
    while (this.waiters.length > 0 && this.satisfied(this.waiters[0])) this.waiters.shift()!.done({ ok: true });
    // Writes needing more than the head (durability requests) may be satisfied behind a waiting head.
    if (this.waiters.some((w) => w.anyRequired > 0)) {
      this.waiters = this.waiters.filter((w) => {
        if (!this.satisfied(w)) return true;
        w.done({ ok: true });
        return false;
      });
    }
  }
}

/**
 * `{replicas: n}` above the replicas known (`known`: names, this node's included) can never be met:
 * the error to answer before the write runs, so nothing is applied; null when it may be met or when
 * `known` is null (not judged yet: the leader's wait decides). The gateway and the leader both ask.
 */
export function unreachableDurability(durability: Durability | undefined, known: readonly string[] | null): FlotillaError | null {
  const copies = typeof durability === 'object' && durability !== null ? durability.replicas : 0;
  if (copies <= 1 || known === null || known.length === 0 || copies <= known.length) return null;
  return new FlotillaError(
    ErrorCode.NOT_ENOUGH_REPLICAS,
    `durability {replicas: ${copies}} needs ${copies} copies, but ${known.length} replica${known.length === 1 ? ' is' : 's are'} known (${known.join(', ')}); nothing was applied: ask for at most ${known.length}, or retry once more replicas are up`,
  );
}
