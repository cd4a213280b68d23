/**
 * The failover monitor as an actor: fed heartbeats, replica-lease records and "you are active /
 * standby" from the outside; on every {@link FailoverMonitor.tick} it decides, acts through the
 * injected {@link Leaser} (compare-and-swap of the replica lease) and {@link MonitorLink}
 * (control messages, status), and publishes a {@link MonitorStatus}. No clock or timer of its own:
 * the process calls tick() every monitorIntervalMs; unit tests call it with a FakeClock.
 *
 * Decisions, only while active (holding the monitor lease):
 * 1. Split brain: two healthy nodes heartbeat role `leader` → every one of an older epoch gets
 *    `{type: 'step-down', epoch, leader}` on control.<node> (resent at most once per
 *    failureTimeoutMs).
 * 2. Failure: the lease holder has not heartbeated as leader (at the lease epoch or later) for
 *    failureTimeoutMs AND the lease is expired ({@link ObservedLease}: by the wall clock, and
 *    unchanged for its TTL since this monitor saw it, so a monitor whose clock runs ahead of the
 *    leader's cannot take a lease the leader still counts valid).
 * 3. Choice: {@link chooseCandidate} among the other nodes against the last known leader position.
 *    Nobody eligible → state `no-candidate` with the reason (logged once per change).
 * 4. Hand-over: compareAndSwap(record, {holder: candidate, epoch: record.epoch + 1}). A conflict
 *    means someone else wrote the lease (the old leader came back, the other monitor acted): the
 *    monitor re-reads it and decides again on the next tick, so it never promotes twice for one
 *    failure.
 *
 * Invariants: the monitor writes the replica lease only with an epoch above every epoch it has
 * seen, only while active, and only when the holder is both silent and expired.
 */
import type { Clock, Logger } from '@flotilla/logging';
import { ControlRequest, Heartbeat, MonitorStatus, PROTOCOL_VERSION } from '@flotilla/protocol';
import { CandidateNode, chooseCandidate } from './candidate';
import { FailureDetector } from './failure-detector';
import { LeaseConflictError, LeaseRecord, Leaser, ObservedLease } from './lease';

/** What the monitor sends out; the process backs it with NATS. */
export interface MonitorLink {
  /** Sends a control request to one replica; delivery failures are the link's to log. */
  sendControl(node: string, request: ControlRequest): void;
  /** Publishes the monitor's status (subjects.monitorStatus). */
  publishStatus(status: MonitorStatus): void;
}

export interface FailoverMonitorOptions {
  /** This monitor's name (monitor-0). */
  name: string;
  /** A leader silent this long (and with its lease run out) is dead. */
  failureTimeoutMs: number;
  /** Largest lag in LSNs of a follower that may still be promoted. */
  maxLagOnFailover: number;
  /** TTL written into the lease handed to the new leader. */
  leaseTtlMs: number;
}

export interface FailoverMonitorDeps {
  clock: Clock;
  log: Logger;
  /** The replica lease (NATS KV key `leader`, or a Kubernetes Lease). */
  leaser: Leaser;
  link: MonitorLink;
  /**
   * After each promotion (the lease written to `to`): the process relabels the former holder's
   * Pod on Kubernetes, which a dead or cut-off leader cannot do itself.
   */
  onPromoted?: (promotion: { from: string | null; to: string; epoch: number }) => void;
}

/** The last failover this monitor performed (wall-clock ms). */
export type FailoverRecord = NonNullable<MonitorStatus['lastFailover']>;

export type MonitorState = MonitorStatus['state'];

export class FailoverMonitor {
  private readonly detector: FailureDetector;
  private readonly observed: ObservedLease;
  private active = false;
  private roleAnnounced = false;
  private ticking = false;
  private state: MonitorState = 'standby';
  private reason: string | undefined;
  private lastFailover: FailoverRecord | undefined;
  /** Last known leader position: highest (epoch, lsn) seen in a leader heartbeat or handed over. */
  private leaderPosition = { epoch: -1, lsn: 0n };
  /** Key of the failure already logged (holder@epoch), so it is logged once. */
  private failureKey: string | undefined;
  private detectedAtMs = 0;
  private lastLoggedNoCandidate: string | undefined;
  private lastPromotionError: string | undefined;
  /**
   * A lease write whose answer did not come (a timeout, a cut connection): it may have been stored.
   * When the lease later shows it (this holder at this epoch), the promotion is recorded as done.
   */
  private unconfirmed: { from: string | null; to: string; epoch: number; detectedAt: number } | undefined;
  /** A lease write of a promotion is in flight. */
  private promoting = false;
  /** node@epoch → monotonic time of the last step-down sent. */
  private readonly stepDownsSent = new Map<string, number>();
  private listeningSinceMono: number;
  /** Since when heartbeats cannot arrive (the NATS connection is down), monotonic. */
  private cutAtMono: number | undefined;
  private failoverCount = 0;
  /** Highest epoch seen in a lease record or a heartbeat: a free lease above 0 had a leader before. */
  private highestEpochSeen = 0;

  constructor(
    private readonly options: FailoverMonitorOptions,
    private readonly deps: FailoverMonitorDeps,
  ) {
    if (!(options.leaseTtlMs > 0)) throw new RangeError(`leaseTtlMs must be > 0, got ${options.leaseTtlMs}`);
    if (!(options.maxLagOnFailover >= 0)) throw new RangeError(`maxLagOnFailover must be >= 0, got ${options.maxLagOnFailover}`);
    this.detector = new FailureDetector(deps.clock, options.failureTimeoutMs);
    this.listeningSinceMono = deps.clock.monotonic();
    this.observed = new ObservedLease(deps.clock);
  }

  private get lease(): LeaseRecord | null {
    return this.observed.record;
  }

  /**
   * The monitor's NATS connection went down: no heartbeat can arrive, so it judges nobody until it
   * is back ({@link heartbeatsResumed}).
   */
  heartbeatsCut(): void {
    this.cutAtMono ??= this.deps.clock.monotonic();
  }

  /**
   * The connection is back: the time without it counts as nobody's silence (and not as warm-up).
   * Before, a leader that let its lease lapse in a NATS outage was failed over right after the heal
   * to the first follower heard; restarting the whole warm-up instead would let a flapping
   * connection put failover off for ever.
   */
  heartbeatsResumed(): void {
    if (this.cutAtMono === undefined) return;
    const gapMs = this.deps.clock.monotonic() - this.cutAtMono;
    this.cutAtMono = undefined;
    this.detector.excludeGap(gapMs);
    this.listeningSinceMono += gapMs;
    this.deps.log.info('heartbeats resumed: the time without them counts as nobody\'s silence', { monitor: this.options.name, gapMs: Math.round(gapMs) });
  }

  /** A decoded, validated heartbeat of a replica. */
  onHeartbeat(hb: Heartbeat): void {
    this.detector.observe(hb);
    this.highestEpochSeen = Math.max(this.highestEpochSeen, hb.epoch);
    if (hb.role === 'leader') this.advanceLeaderPosition(hb.epoch, lsnOf(hb.lsn));
  }

  /** The replica lease as read or watched. Records of an older epoch than the known one are stale reads. */
  onLease(record: LeaseRecord | null): void {
    if (record && this.lease && record.epoch < this.lease.epoch) return;
    this.observed.observe(record);
    if (record) this.highestEpochSeen = Math.max(this.highestEpochSeen, record.epoch);
    this.settleUnconfirmed(record);
  }

  /** A promotion whose lease write went unanswered: done if the lease shows it, abandoned if it shows another epoch. */
  private settleUnconfirmed(record: LeaseRecord | null): void {
    const u = this.unconfirmed;
    // While a write is in flight, its own answer settles it (the watch may show it first).
    if (!u || !record || this.promoting) return;
    if (record.holder === u.to && record.epoch === u.epoch) {
      this.unconfirmed = undefined;
      // Recorded already (an earlier write of the same promotion was answered or settled).
      if (this.lastFailover?.epoch === u.epoch && this.lastFailover.to === u.to) return;
      this.recordPromotion(u.from, u.to, u.epoch, u.detectedAt, true);
    } else if (record.epoch >= u.epoch) {
      this.unconfirmed = undefined;
    }
  }

  private recordPromotion(from: string | null, to: string, epoch: number, detectedAt: number, answerLost: boolean): void {
    // The leader position stays the failed leader's until the new one heartbeats as leader: if it
    // never takes the lease up, the next candidate is judged against what was lost, not against
    // the candidate that failed (the bound would loosen with each failed hand-over).
    const promotedAt = this.deps.clock.now();
    this.lastFailover = { from, to, epoch, detectedAt, promotedAt };
    this.failoverCount++;
    this.failureKey = undefined;
    this.deps.log.info('promoted', {
      monitor: this.options.name,
      from,
      to,
      epoch,
      detectedToPromotedMs: promotedAt - detectedAt,
      ...(answerLost ? { note: 'the lease write went unanswered; the lease shows it took effect' } : {}),
    });
    this.deps.onPromoted?.({ from, to, epoch });
  }

  /** Whether this monitor holds the monitor lease; only an active monitor acts. */
  setActive(active: boolean): void {
    // The first call announces the role too, so each monitor's log says which one it started as.
    if (active === this.active && this.roleAnnounced) return;
    this.roleAnnounced = true;
    this.active = active;
    this.deps.log.info(active ? 'monitor active' : 'monitor standby', { monitor: this.options.name });
    if (!active) {
      this.setState('standby', undefined);
      // A standby promotes nothing: a lease that later shows this holder is the active monitor's doing.
      this.unconfirmed = undefined;
    }
  }

  get isActive(): boolean {
    return this.active;
  }

  /** Failovers this monitor performed since it started. */
  get failovers(): number {
    return this.failoverCount;
  }

  /** One evaluation: decide, act, publish the status. Re-entrant calls while one runs are dropped. */
  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      if (this.active) await this.evaluate();
      else this.setState('standby', undefined);
      this.deps.link.publishStatus(this.status());
    } finally {
      this.ticking = false;
    }
  }

  /** The status as published. */
  status(): MonitorStatus {
    const s: MonitorStatus = {
      type: 'monitor-status',
      v: PROTOCOL_VERSION,
      monitor: this.options.name,
      active: this.active,
      leader: this.lease?.holder ?? null,
      epoch: this.lease?.epoch ?? 0,
      state: this.state,
      ts: this.deps.clock.now(),
    };
    if (this.reason !== undefined) s.reason = this.reason;
    if (this.lastFailover) s.lastFailover = { ...this.lastFailover };
    return s;
  }

  // ---- decisions ----------------------------------------------------------------------------

  private async evaluate(): Promise<void> {
    const { failureTimeoutMs } = this.options;
    if (this.cutAtMono !== undefined) {
      this.setState('ok', 'no heartbeats can arrive (NATS connection down): judging nobody until it is back');
      return;
    }
    if (this.deps.clock.monotonic() - this.listeningSinceMono < failureTimeoutMs) {
      // Not yet a full failure window of heartbeats: silence now means "not heard yet", not "dead".
      this.setState('ok', `warming up: listening to heartbeats for ${failureTimeoutMs} ms before deciding`);
      return;
    }
    this.checkSplitBrain();
    const record = this.lease;
    if (!record || record.holder === null) {
      if (this.highestEpochSeen === 0) {
        this.setState('ok', 'no replica holds the leader lease yet: at a first start a replica takes it itself');
        return;
      }
      // Free after a leader existed (released, deleted by hand, a wiped lease store): replicas
      // leave it alone, so it goes to the best candidate, as after a failure. Not before the last
      // holder's TTL has passed (it may not know yet, and still take writes), nor while a node
      // heartbeats as a leader with a valid lease.
      const stillLeading = this.detector.nodes().find((n) => n.healthy && n.hb.role === 'leader' && n.hb.leaseValid !== false);
      if (!this.observed.expired() || stillLeading) {
        this.setState('ok', `the leader lease is free; waiting for ${stillLeading ? `${stillLeading.hb.node}, which still heartbeats as leader,` : 'its last holder\'s TTL'} before giving it`);
        return;
      }
      await this.giveFreeLease(record);
      return;
    }
    const holder = record.holder;
    const silentMs = this.detector.silentAsLeaderForMs(holder, record.epoch);
    const expired = this.observed.expired();
    if (silentMs < failureTimeoutMs || !expired) {
      this.failureKey = undefined;
      this.lastLoggedNoCandidate = undefined;
      if (silentMs >= failureTimeoutMs) {
        this.setState('ok', `leader ${holder} silent as leader for ${fmtMs(silentMs)}; its lease is valid for ${Math.round(this.observed.remainingMs())} ms more`);
      } else {
        this.setState('ok', undefined);
      }
      return;
    }
    const key = `${holder}@${record.epoch}`;
    if (this.failureKey !== key) {
      this.failureKey = key;
      this.detectedAtMs = this.deps.clock.now();
      this.deps.log.warn('leader failure detected', {
        monitor: this.options.name,
        leader: holder,
        epoch: record.epoch,
        silentAsLeaderForMs: Number.isFinite(silentMs) ? Math.round(silentMs) : null,
        leaseExpiredForMs: Math.round(this.deps.clock.now() - record.renewedAtMs - record.ttlMs),
        lastLeaderLsn: String(this.lastLeaderLsn()),
      });
    }
    const choice = chooseCandidate(this.candidateNodes(), {
      lastLeaderLsn: String(this.lastLeaderLsn()),
      maxLagOnFailover: this.options.maxLagOnFailover,
      exclude: [holder],
    });
    if (!choice.candidate) {
      this.setState('no-candidate', choice.reason);
      if (this.lastLoggedNoCandidate !== choice.reason) {
        this.lastLoggedNoCandidate = choice.reason;
        this.deps.log.warn('no eligible candidate', { monitor: this.options.name, leader: holder, epoch: record.epoch, reason: choice.reason, excluded: choice.excluded });
      }
      return;
    }
    this.lastLoggedNoCandidate = undefined;
    await this.promote(record, choice.candidate, choice.excluded);
  }

  private async giveFreeLease(record: LeaseRecord | null): Promise<void> {
    const choice = chooseCandidate(this.candidateNodes(), { lastLeaderLsn: String(this.lastLeaderLsn()), maxLagOnFailover: this.options.maxLagOnFailover, exclude: [] });
    if (!choice.candidate) {
      const reason = `the leader lease is free (epoch ${this.highestEpochSeen} before): ${choice.reason}`;
      this.setState('no-candidate', reason);
      if (this.lastLoggedNoCandidate !== reason) {
        this.lastLoggedNoCandidate = reason;
        this.deps.log.warn('no eligible candidate', { monitor: this.options.name, leader: null, epoch: this.highestEpochSeen, reason: choice.reason, excluded: choice.excluded });
      }
      return;
    }
    this.lastLoggedNoCandidate = undefined;
    if (this.failureKey !== 'free') {
      this.failureKey = 'free';
      this.detectedAtMs = this.deps.clock.now();
      this.deps.log.warn('the leader lease is free', { monitor: this.options.name, epoch: record?.epoch ?? null, highestEpochSeen: this.highestEpochSeen });
    }
    await this.promote(record, choice.candidate, choice.excluded);
  }

  private async promote(record: LeaseRecord | null, candidate: CandidateNode, excluded: unknown): Promise<void> {
    const epoch = Math.max(record?.epoch ?? 0, candidate.epoch, this.leaderPosition.epoch, this.highestEpochSeen) + 1;
    const from = record?.holder ?? null;
    this.setState('failing-over', `promoting ${candidate.name} to epoch ${epoch} (leader ${from} failed)`);
    this.deps.log.info('promoting', {
      monitor: this.options.name,
      from,
      to: candidate.name,
      epoch,
      flushedLsn: candidate.flushedLsn,
      lastLeaderLsn: String(this.lastLeaderLsn()),
      sync: candidate.sync,
      excluded,
    });
    let stored: LeaseRecord;
    try {
      this.promoting = true;
      stored = await this.deps.leaser.compareAndSwap(record, { holder: candidate.name, epoch, ttlMs: this.options.leaseTtlMs });
    } catch (err) {
      this.promoting = false;
      if (err instanceof LeaseConflictError) {
        this.deps.log.info('lease changed under us: someone else acted; re-reading it', { monitor: this.options.name, to: candidate.name, epoch });
        try {
          this.onLease(await this.deps.leaser.read());
        } catch (readErr) {
          this.deps.log.warn('lease re-read failed', { err: (readErr as Error).message });
        }
        this.failureKey = undefined;
        this.setState('ok', 'the leader lease changed while promoting: re-evaluating');
        return;
      }
      // It may have been stored all the same (the answer was lost): the lease will tell. The watch
      // may have shown it already, while the write was in flight; else it tells later, while the
      // lease is still the one it was written over (once it moved on to another, that was seen).
      const shown = this.lease;
      if (shown && shown.holder === candidate.name && shown.epoch === epoch) {
        this.unconfirmed = undefined;
        this.recordPromotion(from, candidate.name, epoch, this.detectedAtMs, true);
        this.lastPromotionError = undefined;
        this.setState('ok', undefined);
        return;
      }
      if ((shown?.revision ?? null) === (record?.revision ?? null)) this.unconfirmed = { from, to: candidate.name, epoch, detectedAt: this.detectedAtMs };
      // An earlier unanswered write that the watch showed while this one was in flight.
      else this.settleUnconfirmed(shown);
      // Once per cause, not every tick (every monitorIntervalMs) while the backend stays down.
      const why = `${candidate.name}: ${(err as Error).message}`;
      if (this.lastPromotionError !== why) {
        this.lastPromotionError = why;
        this.deps.log.warn('promotion failed: lease backend unavailable; retrying every tick', { monitor: this.options.name, to: candidate.name, err: (err as Error).message });
      }
      this.setState('failing-over', `cannot write the leader lease: ${(err as Error).message}`);
      return;
    }
    this.promoting = false;
    this.observed.observe(stored);
    this.lastPromotionError = undefined;
    this.unconfirmed = undefined;
    this.recordPromotion(from, candidate.name, epoch, this.detectedAtMs, false);
    this.setState('ok', undefined);
  }

  /** Two healthy leaders: tell every one of an older epoch (or, on a tie, not the lease holder) to step down. */
  private checkSplitBrain(): void {
    const leaders = this.detector.nodes().filter((n) => n.healthy && n.hb.role === 'leader');
    if (leaders.length < 2) return;
    const top = leaders.reduce((a, b) => (b.hb.epoch > a.hb.epoch || (b.hb.epoch === a.hb.epoch && b.hb.node === this.lease?.holder) ? b : a));
    const now = this.deps.clock.monotonic();
    for (const l of leaders) {
      if (l === top) continue;
      const key = `${l.hb.node}@${l.hb.epoch}`;
      const last = this.stepDownsSent.get(key);
      if (last !== undefined && now - last < this.options.failureTimeoutMs) continue;
      this.stepDownsSent.set(key, now);
      const epoch = Math.max(top.hb.epoch, this.lease?.epoch ?? 0);
      this.deps.log.warn('split brain: telling the older leader to step down', {
        monitor: this.options.name,
        node: l.hb.node,
        nodeEpoch: l.hb.epoch,
        leader: top.hb.node,
        epoch,
      });
      this.deps.link.sendControl(l.hb.node, { type: 'step-down', v: PROTOCOL_VERSION, epoch, leader: top.hb.node });
    }
    if (this.stepDownsSent.size > 1000) this.stepDownsSent.clear(); // bounded: keys are node@epoch
  }

  private candidateNodes(): CandidateNode[] {
    return this.detector.nodes().map((n) => ({
      name: n.hb.node,
      role: n.hb.role,
      // The epoch of the node's last log entry (Raft's lastLogTerm): a returning old leader with
      // entries nobody else has must not win on LSN alone.
      epoch: typeof n.hb.lastEpoch === 'number' ? n.hb.lastEpoch : n.hb.epoch,
      flushedLsn: typeof n.hb.flushedLsn === 'string' ? n.hb.flushedLsn : n.hb.lsn,
      sync: n.hb.sync === true,
      healthy: n.healthy,
    }));
  }

  /** The last leader position, or (never having seen a leader) the highest position any node reports. */
  private lastLeaderLsn(): bigint {
    if (this.leaderPosition.epoch >= 0) return this.leaderPosition.lsn;
    return this.detector.nodes().reduce((max, n) => (lsnOf(n.hb.lsn) > max ? lsnOf(n.hb.lsn) : max), 0n);
  }

  private advanceLeaderPosition(epoch: number, lsn: bigint): void {
    const p = this.leaderPosition;
    if (epoch > p.epoch || (epoch === p.epoch && lsn > p.lsn)) this.leaderPosition = { epoch, lsn };
  }

  private setState(state: MonitorState, reason: string | undefined): void {
    this.state = state;
    this.reason = reason;
  }
}

function lsnOf(v: unknown): bigint {
  return typeof v === 'string' && /^(0|[1-9][0-9]*)$/.test(v) ? BigInt(v) : 0n;
}

function fmtMs(ms: number): string {
  return Number.isFinite(ms) ? `${Math.round(ms)} ms` : 'ever (no leader heartbeat seen)';
}
