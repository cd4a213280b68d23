/**
 * The replica's side of election: reads and watches the lease, takes it when it is free, renews it
 * while leading, and tells the node which role to play. A leader that cannot renew stops counting
 * itself valid `safetyMarginMs` before the lease could expire for others (monotonic clock): the
 * node checks {@link LeaseKeeper.isValidLeader} before every write and strong read.
 *
 * Taking over an expired lease of another holder is the failover monitor's decision, not the
 * replica's: by default the keeper takes only its own lease, or a free one (absent or released)
 * before any leader existed as far as it knows (the first start of a new cluster). A free lease
 * after that (released, deleted by hand, a wiped lease store) is the monitor's to give: the
 * first replica to grab it could be lagging, seeding or empty, and would lead with what it has.
 * Every epoch this keeper writes is above every epoch it has seen, so none is ever used twice.
 * With `takeExpired` (the monitors' own lease, key `monitor`) it also takes any free lease and one
 * whose holder let it run out, so a standby monitor becomes active when the active one dies.
 */
import type { Clock, Logger, Timer } from '@flotilla/logging';
import { LeaseConflictError, LeaseRecord, Leaser, LeaseWatch, ObservedLease } from './lease';

export interface LeaseKeeperOptions {
  node: string;
  ttlMs: number;
  renewMs: number;
  /** Stop writing this long before the lease could expire elsewhere (covers clock-rate skew). */
  safetyMarginMs: number;
  /** Highest epoch this node's data knows: a new lease starts above it. */
  knownEpoch: () => number;
  /**
   * Also take a lease held by another node once it is expired (ObservedLease: by the wall clock and
   * by this node's own timing of the record).
   * Default false: replicas never do this (the monitor decides failovers); monitors do, for the
   * monitor lease.
   */
  takeExpired?: boolean;
  /**
   * False while this node could not do the holder's job (a monitor cut off from NATS hears no
   * heartbeats and could fail nobody over): it then neither takes nor renews the lease, so it
   * lapses to a peer that can. Default: always true.
   */
  mayHold?: () => boolean;
}

export interface LeadershipView {
  /** Holder of the current lease (null when none). */
  leader: string | null;
  epoch: number;
  /** True when this node holds the lease. */
  isLeader: boolean;
}

export class LeaseKeeper {
  private current: LeaseRecord | null = null;
  private validUntilMono = 0;
  private renewTimer: Timer | null = null;
  private watch: LeaseWatch | null = null;
  private busy = false;
  private stopped = false;
  private view: LeadershipView = { leader: null, epoch: 0, isLeader: false };
  private readonly observed: ObservedLease;
  /** Highest epoch seen in any lease record (a deleted lease does not lower it). */
  private highestEpochSeen = 0;
  /**
   * Set when this node started with no history (its data knows no epoch) and the first lease it
   * saw was already there: a lease naming it at or below that epoch is an earlier incarnation's
   * (its volume was replaced), not something to lead with an empty database.
   */
  private amnesiacUpTo: number | null = null;
  private started = false;

  constructor(
    private readonly leaser: Leaser,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly options: LeaseKeeperOptions,
    private readonly onChange: (view: LeadershipView) => void,
  ) {
    this.observed = new ObservedLease(clock);
  }

  /** Reads the lease, takes it if free, and watches it from then on. */
  async start(): Promise<void> {
    this.watch = this.leaser.watch((r) => void this.consider(r));
    await this.consider(await this.leaser.read().catch(() => null));
    this.renewTimer = this.clock.setInterval(() => void this.tick(), this.options.renewMs);
  }

  /** True while this node holds the lease and it cannot have expired for anyone else. */
  isValidLeader(): boolean {
    return this.view.isLeader && this.clock.monotonic() < this.validUntilMono;
  }

  /** Milliseconds of guaranteed leadership left (0 when not leading). */
  validForMs(): number {
    return this.view.isLeader ? Math.max(0, this.validUntilMono - this.clock.monotonic()) : 0;
  }

  get leadership(): LeadershipView {
    return this.view;
  }

  /** Gives the lease up (clean shutdown of a leader), so a successor need not wait for expiry. */
  async release(): Promise<void> {
    if (!this.view.isLeader || !this.current) return;
    // Nothing may be acknowledged once the lease can be taken: any follower may take it at once.
    this.validUntilMono = 0;
    try {
      await this.leaser.compareAndSwap(this.current, { holder: null, epoch: this.current.epoch, ttlMs: this.options.ttlMs });
      this.log.info('lease released', { epoch: this.current.epoch });
    } catch (err) {
      this.log.warn('lease release failed', { err: (err as Error).message });
    }
  }

  /**
   * Planned switchover: hands the lease to `to` with the next epoch (compare-and-swap on our own
   * lease) and stops leading. Throws when the lease is not ours or changed meanwhile.
   */
  async handOver(to: string): Promise<LeadershipView> {
    if (!this.view.isLeader || !this.current) throw new Error('handOver: this node does not hold the lease');
    const epoch = this.current.epoch + 1;
    // Writes stop counting as valid from here: the new holder may lead as soon as the swap lands.
    this.validUntilMono = 0;
    const r = await this.leaser.compareAndSwap(this.current, { holder: to, epoch, ttlMs: this.options.ttlMs });
    this.current = r;
    const view = { leader: to, epoch, isLeader: false };
    this.setView(view);
    this.log.info('lease handed over', { to, epoch });
    return view;
  }

  /** A newer leader exists (seen on the wire before the lease told us): stop leading at once. */
  yieldTo(leader: string, epoch: number): void {
    if (epoch <= this.view.epoch && !this.view.isLeader) return;
    if (epoch <= this.view.epoch) return;
    this.validUntilMono = 0;
    this.log.warn('stepping down: a leader of a newer epoch exists', { leader, epoch, ourEpoch: this.view.epoch });
    this.setView({ leader, epoch, isLeader: false });
  }

  stop(): void {
    this.stopped = true;
    this.renewTimer?.cancel();
    this.watch?.stop();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    if (this.view.isLeader) await this.renew();
    else await this.consider(await this.leaser.read().catch(() => this.current));
  }

  private async renew(): Promise<void> {
    if (this.busy || !this.current) return;
    if (this.options.mayHold && !this.options.mayHold()) return; // let it lapse (validity runs out on its own)
    this.busy = true;
    const sentAt = this.clock.monotonic();
    try {
      const r = await this.leaser.compareAndSwap(this.current, { holder: this.options.node, epoch: this.current.epoch, ttlMs: this.options.ttlMs });
      this.current = r;
      this.validUntilMono = sentAt + this.options.ttlMs - this.options.safetyMarginMs;
    } catch (err) {
      if (err instanceof LeaseConflictError) {
        const stored = await this.leaser.read().catch(() => null);
        if (stored && stored.holder === this.options.node && stored.epoch === this.current.epoch) {
          // Our previous renewal landed although its answer did not reach us: adopt and go on.
          this.current = stored;
          return;
        }
        this.log.warn('lease renewal refused: the lease changed', { epoch: this.current.epoch, holder: stored?.holder, storedEpoch: stored?.epoch });
        this.busy = false;
        await this.consider(stored);
        return;
      }
      this.log.warn('lease renewal failed', { err: (err as Error).message, validForMs: Math.round(this.validForMs()) });
    } finally {
      this.busy = false;
    }
  }

  /** Decides what a stored lease means for this node. */
  private async consider(record: LeaseRecord | null): Promise<void> {
    if (this.stopped) return;
    // Epochs in the lease never go back (renew and release keep it, every new holder adds 1), so a
    // record of a lower epoch than the one we hold is a stale read or a late watch event (the watch
    // delivers the value it found when it started). Taking it as `current` would make every later
    // renewal compare-and-swap against a dead revision, and a leader would lose a lease it holds.
    if (record && this.current && record.epoch < this.current.epoch) return;
    this.observed.observe(record);
    if (!this.started) {
      this.started = true;
      // Replicas only: a monitor has no data, its knownEpoch is always 0, and its own lease held
      // before a restart is simply its own (it must take it back, or no failover happens).
      if (this.options.takeExpired !== true && record && record.epoch > 0 && this.options.knownEpoch() === 0) this.amnesiacUpTo = record.epoch;
    }
    if (record) this.highestEpochSeen = Math.max(this.highestEpochSeen, record.epoch);
    if (this.busy) return;
    this.busy = true;
    try {
      const me = this.options.node;
      if (record && record.holder === me && this.view.isLeader && record.epoch === this.view.epoch) {
        // Our own renewal echoed by the watch (maybe late): `current` is what our last CAS stored.
        return;
      }
      if (record && record.holder === me && !this.view.isLeader && this.amnesiacUpTo !== null && record.epoch <= this.amnesiacUpTo && this.options.knownEpoch() === 0) {
        // Our name, from before our data was lost: leading now would tell every follower to
        // rewind to nothing. Let it run out; the monitor gives it to the most up-to-date node
        // (us too, if we are the only one, with a newer epoch), and we are seeded from there.
        if (this.view.leader !== null || this.view.epoch !== record.epoch) {
          this.log.warn('the lease names this node, but its data knows no epoch (a new volume?): not leading with it', { epoch: record.epoch });
        }
        this.current = record;
        this.validUntilMono = 0;
        this.setView({ leader: null, epoch: record.epoch, isLeader: false });
        return;
      }
      if (record && record.holder === me && !this.view.isLeader && record.epoch > this.options.knownEpoch()) {
        // Handed to us (failover or switchover): lead in the epoch we were given, once we renewed
        // it ourselves. Its renewedAtMs is the writer's wall clock, and ours may be behind theirs:
        // validity is timed from before our own write, on our monotonic clock, as every renewal is.
        const sentAt = this.clock.monotonic();
        try {
          const r = await this.leaser.compareAndSwap(record, { holder: me, epoch: record.epoch, ttlMs: this.options.ttlMs });
          this.current = r;
          this.observed.observe(r);
          this.validUntilMono = sentAt + this.options.ttlMs - this.options.safetyMarginMs;
          this.setView({ leader: me, epoch: r.epoch, isLeader: true });
        } catch (err) {
          // Changed meanwhile (the watch brings the new value), or unreachable (the next read retries).
          if (!(err instanceof LeaseConflictError)) this.log.warn('renewing the lease handed to us failed', { epoch: record.epoch, err: (err as Error).message });
        }
        return;
      }
      const expiredElsewhere = this.options.takeExpired === true && record !== null && record.holder !== me && this.observed.expired();
      if (this.options.mayHold && !this.options.mayHold()) {
        // Not fit to hold it now: follow whoever does (or nobody), take nothing.
        this.current = record;
        if (record === null || record.holder !== me) this.setView({ leader: record?.holder ?? null, epoch: record?.epoch ?? this.view.epoch, isLeader: false });
        return;
      }
      const free = record === null || record.holder === null;
      const neverLed = this.highestEpochSeen === 0 && this.options.knownEpoch() === 0;
      if ((free && (this.options.takeExpired === true || neverLed)) || (record !== null && record.holder === me && !this.view.isLeader) || expiredElsewhere) {
        // Free at a first start (or for monitors), ours from before a restart, or (takeExpired) run
        // out by its holder: take it with an epoch above every one seen.
        const epoch = Math.max(record?.epoch ?? 0, this.options.knownEpoch(), this.highestEpochSeen) + 1;
        const sentAt = this.clock.monotonic();
        try {
          const r = await this.leaser.compareAndSwap(record, { holder: me, epoch, ttlMs: this.options.ttlMs });
          this.current = r;
          this.validUntilMono = sentAt + this.options.ttlMs - this.options.safetyMarginMs;
          this.setView({ leader: me, epoch: r.epoch, isLeader: true });
        } catch (err) {
          if (!(err instanceof LeaseConflictError)) this.log.warn('lease acquire failed', { err: (err as Error).message });
        }
        return;
      }
      this.current = record;
      if (record === null || record.holder === null) {
        // Free after a leader existed: the monitor gives it to the best candidate. Until then
        // nobody leads, this node included (a leader whose lease was deleted stops counting itself valid).
        if (this.view.isLeader || this.view.leader !== null) this.log.warn('the lease is free: waiting for the monitor to give it', { epoch: this.highestEpochSeen });
        this.validUntilMono = 0;
        this.setView({ leader: null, epoch: Math.max(this.view.epoch, this.highestEpochSeen), isLeader: false });
      } else if (record.holder !== me) {
        this.validUntilMono = 0;
        this.setView({ leader: record.holder, epoch: record.epoch, isLeader: false });
      }
    } finally {
      this.busy = false;
    }
  }

  private setView(v: LeadershipView): void {
    const old = this.view;
    if (old.leader === v.leader && old.epoch === v.epoch && old.isLeader === v.isLeader) return;
    this.view = v;
    this.onChange(v);
  }
}
