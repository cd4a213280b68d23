/**
 * The follower role: applies the leader's log strictly in LSN order, persists its position (the
 * log and data commit together), reports received/flushed/applied, and recovers by itself:
 * a gap or a restart → catch-up from its own last LSN; a position the leader no longer keeps (or
 * an empty database) → re-seed from a snapshot, then catch-up.
 *
 * The apply path, in small steps: check epoch → check position → check checksum → apply → ack.
 */
import * as crypto from 'node:crypto';
import {
  AckMessage,
  CatchupRequest,
  decodeCatchupReply,
  decodeLogBatch,
  decodeSnapshotReply,
  encode,
  ErrorCode,
  FlotillaError,
  LogBatch,
  parseLsn,
  payloadCrc,
  PROTOCOL_VERSION,
  ProtocolError,
  SnapshotFrame,
  SnapshotInfo,
  SnapshotReply,
  SnapshotRequest,
  SnapshotStarted,
  WireEntry,
} from '@flotilla/protocol';
import { DivergenceError, LogEntry, seedFileFor } from '@flotilla/storage';
import { TransportError } from '@flotilla/transport';
import type { Subscription } from '@flotilla/transport';
import type { Timer } from '@flotilla/logging';
import type { RoleContext } from './context';
import { WalFlusher } from './wal-flusher';
import { SNAPSHOT_HOLD_MS } from './leader';
import { SnapshotFileWriter } from './snapshot-file-writer';
import { removeInBackground } from './remove-in-background';
import { FreshnessTracker } from './freshness';

/** Live entries buffered while a catch-up runs; beyond this they are dropped and fetched again. */
export const CATCHUP_BUFFER_ENTRIES_MAX = 50_000;
/** ... or this many payload bytes (large entries during a long seed would otherwise hold GBs). */
export const CATCHUP_BUFFER_BYTES_MAX = 64 * 1024 * 1024;
/** A catch-up that gets no answer says so at most this often. */
export const CATCHUP_SILENCE_LOG_MS = 10_000;
/** Bytes asked for per catch-up round trip. */
export const CATCHUP_REQUEST_BYTES = 512 * 1024;
/** An async follower fdatasyncs what it applied at most this long after applying it. */
export const FLUSH_INTERVAL_MS = 20;
/** One catch-up round trip; a healthy leader answers in milliseconds. */
export const CATCHUP_REQUEST_TIMEOUT_MS = 1000;
/**
 * Snapshot chunks requested ahead of the one being written (16 × 960 KiB in flight). Measured at
 * 200 MB: 16 seeded in 1.2–1.7 s where 8 took 1.5–3.0 s; while the leader is still making the
 * file, requests past its end wait there, and a deeper window refills faster when it moves on.
 */
export const SNAPSHOT_CHUNKS_IN_FLIGHT = 4;
/** The leader answers `snapshot-begin` once the snapshot's read transaction is open (after any snapshot it is making). */
export const SNAPSHOT_BEGIN_TIMEOUT_MS = 120_000;
/** A seeding follower logs its progress at most this often. */
export const SNAPSHOT_PROGRESS_LOG_MS = 5000;
export const RETRY_DELAY_MS = 250;

type Phase = 'live' | 'catching-up' | 'seeding';

type SnapshotAsk = (m: SnapshotRequest, timeoutMs: number) => Promise<SnapshotReply>;

interface ReceivedSnapshot {
  info: SnapshotInfo;
  /** SHA-256 of each chunk as written. */
  hashes: Buffer[];
}

function sha256(data: Uint8Array): Buffer {
  return crypto.createHash('sha256').update(data).digest();
}

export class FollowerRole {
  private sub: Subscription | null = null;
  private phase: Phase = 'catching-up';
  /**
   * True once the leader we follow has answered a catch-up without "diverged": our log is then a
   * prefix of its log. Until then our tail may hold transactions it never had (an ex-leader, or
   * a follower of one), so reads are refused (ReplicaNode) rather than served from them.
   */
  private checked = false;
  /** The last catch-up entry refused for its checksum (logged once, not at every retry). */
  private lastRefusedCatchupLsn = 0;
  /** Payload bytes in `buffered`. */
  private bufferedBytes = 0;
  private pending: LogEntry[] = [];
  private buffered: LogEntry[] = [];
  private applyScheduled = false;
  private stopped = false;
  private received = 0;
  /** Highest LSN the leader is known to have, and when it was learned. */
  leaderLsn = 0;
  private firstUnappliedTs = 0;
  /** Monotonic time of the last message from the leader (entries or heartbeat). */
  private leaderContactMono: number;
  /** The leader's claims (heartbeats, stream messages): how fresh the data provably is. */
  private readonly freshness = new FreshnessTracker();
  /** The LSN the leader's previous heartbeat announced (0: none since the last repoint). */
  private announcedLsn = 0;
  /** While seeding: bytes written so far, and the snapshot's size once known (else 0). */
  seedProgress: { bytes: number; done: number } | null = null;

  /** Highest LSN known to be on disk (fdatasync'd); acks report it as `flushed`. */
  private flushed: number;
  private flushTimer: Timer | null = null;
  private readonly flusher: WalFlusher;

  constructor(
    private readonly ctx: RoleContext,
    public epoch: number,
    public leader: string,
    /** Called after every commit of applied entries (read waiters, metrics). */
    private readonly onApplied: () => void,
    /** True when a write may be waiting for this follower's flush (sync modes): flush at once. */
    private readonly flushUrgent: () => boolean = () => true,
  ) {
    ctx.store.setDurability('deferred');
    this.flushed = ctx.store.syncWal();
    this.flusher = new WalFlusher(
      () => ctx.store.syncWalAsync(),
      (lsn) => {
        if (lsn > this.flushed) {
          this.flushed = lsn;
          this.sendAck();
        }
      },
      (err) => {
        // What the kernel failed to write is gone from the page cache too: never report it flushed.
        ctx.log.error('fdatasync failed: this replica cannot vouch for its disk', { err: err.message });
        ctx.fatal(err);
      },
      () => !this.stopped,
    );
    this.received = ctx.store.lastLsn;
    this.leaderContactMono = ctx.clock.monotonic();
  }

  get state(): Phase {
    return this.phase;
  }

  start(): void {
    this.sub = this.ctx.transport.subscribe(this.ctx.subjects.log, (m) => this.onBatch(m.data));
    // Whatever happened before (restart, new leader), ask for everything after our own position.
    void this.catchUp('start');
  }

  stop(): void {
    this.stopped = true;
    this.flushTimer?.cancel();
    this.flushTimer = null;
    this.sub?.unsubscribe();
    this.sub = null;
    // Whatever role comes next starts from a durable position.
    this.flushed = this.ctx.store.syncWal();
  }

  /** Highest LSN on disk. */
  get flushedLsn(): number {
    return Math.min(this.flushed, this.ctx.store.lastLsn);
  }

  /** Follow a new leader (a new epoch): catch up from our own position again. */
  repoint(leader: string, epoch: number): void {
    // A lease view older than what the stream already showed us (a late watch event after two quick
    // failovers) would point us back at a deposed leader.
    if (epoch < this.epoch) {
      this.ctx.log.info('ignoring an older leader than the one followed', { leader, epoch, following: this.leader, ourEpoch: this.epoch });
      return;
    }
    if (leader !== this.leader || epoch !== this.epoch) this.checked = false; // the new leader checks our log first
    this.leader = leader;
    this.epoch = epoch;
    this.forgetLeaderClaims();
    if (this.phase === 'live') void this.catchUp('new leader');
  }

  /** What another leader said of its log (its claims, its last announced LSN) is nothing to go by now. */
  private forgetLeaderClaims(): void {
    this.freshness.reset();
    this.announcedLsn = 0;
  }

  /** Replication lag in ms: age of the oldest entry we know of and have not applied. */
  lagMs(): number {
    // Not hearing from the leader is lag too: a cut-off follower must not think itself current.
    const silentMs = this.ctx.clock.monotonic() - this.leaderContactMono;
    const silence = silentMs > 2 * this.ctx.config.heartbeatIntervalMs ? Math.round(silentMs) : 0;
    if (this.ctx.store.lastLsn >= Math.max(this.leaderLsn, this.received)) return silence;
    const since = this.firstUnappliedTs || this.ctx.store.lastTimestamp;
    return Math.max(silence, since ? Math.max(0, this.ctx.clock.now() - since) : 0);
  }

  /**
   * How far behind the leader this replica's data may be, in ms, proven by the leader's own claims
   * (see FreshnessTracker); Infinity until one holds. What a bounded read is checked against:
   * unlike lagMs it never counts a late message as recent contact.
   */
  stalenessMs(): number {
    return this.freshness.stalenessMs(this.ctx.clock.now(), this.ctx.store.lastLsn);
  }

  /** False until the leader has confirmed our log is a prefix of its own (see `checked`). */
  get logChecked(): boolean {
    return this.checked;
  }

  /** The leader's heartbeat tells its last LSN even when no entry flows. */
  noteLeaderLsn(lsn: number, ts: number): void {
    this.leaderContactMono = this.ctx.clock.monotonic();
    // While seeding, the store is about to be replaced: a claim judged against it means nothing.
    if (this.phase !== 'seeding') this.freshness.claim(lsn, ts, this.ctx.store.lastLsn);
    // The stream is in order with the heartbeats: by the time this heartbeat is here, every entry
    // the previous one announced has arrived, unless the stream lost it (a reconnect drops what was
    // in flight). When writes have stopped, no later entry would reveal that gap: ask for it now.
    const have = Math.max(this.received, this.nextExpected() - 1);
    const lost = this.announcedLsn > have;
    this.announcedLsn = lsn;
    if (lost && this.phase === 'live') void this.catchUp('entries announced by the leader never arrived');
    if (lsn > this.leaderLsn) {
      this.leaderLsn = lsn;
      if (!this.firstUnappliedTs && lsn > this.ctx.store.lastLsn) this.firstUnappliedTs = ts;
    }
  }

  // ---- live stream ----------------------------------------------------------------------------

  private onBatch(data: Uint8Array): void {
    if (this.stopped) return;
    let batch: LogBatch;
    try {
      batch = decodeLogBatch(data);
    } catch (err) {
      this.refuse(`malformed batch: ${(err as Error).message}`);
      return;
    }
    if (batch.epoch < this.epoch) {
      this.refuse(`entries from epoch ${batch.epoch} of ${batch.leader}, older than ours (${this.epoch})`);
      return;
    }
    let newLeader = false;
    if (batch.epoch > this.epoch) {
      // A newer leader than the lease told us of yet: its entries are the truth from now on, once
      // a catch-up from it has checked that our log is a prefix of its log (our tail may hold
      // transactions of the old leader it never had, at the very LSNs it now sends).
      this.ctx.log.info('following newer epoch seen on the stream', { leader: batch.leader, epoch: batch.epoch });
      this.epoch = batch.epoch;
      this.leader = batch.leader;
      this.forgetLeaderClaims();
      this.checked = false;
      newLeader = true;
    }
    this.leaderContactMono = this.ctx.clock.monotonic();
    if (batch.lsn !== undefined && batch.ts !== undefined && this.phase !== 'seeding') this.freshness.claim(parseLsn(batch.lsn), batch.ts, this.ctx.store.lastLsn);
    const entries: LogEntry[] = [];
    for (const w of batch.entries) {
      const e = fromWire(w);
      if (e.epoch > batch.epoch) {
        this.refuse(`entry ${e.lsn} has epoch ${e.epoch}, newer than its batch (${batch.epoch})`);
        return;
      }
      if (payloadCrc(e.payload) !== e.crc) {
        this.refuse(`entry ${e.lsn}: bad checksum`);
        void this.catchUp('bad checksum');
        return;
      }
      entries.push(e);
    }
    if (entries.length === 0) return;
    const lastOfBatch = entries[entries.length - 1];
    this.received = Math.max(this.received, lastOfBatch.lsn);
    if (lastOfBatch.lsn > this.leaderLsn) this.leaderLsn = lastOfBatch.lsn;
    if (!this.firstUnappliedTs) this.firstUnappliedTs = entries[0].ts;
    if (this.phase !== 'live' || newLeader) {
      this.buffer(entries);
      if (newLeader) void this.catchUp('a new leader on the stream');
      return;
    }
    for (let i = 0; i < entries.length; i++) {
      // A gap switched to catch-up: the rest of the message waits with it (one refusal, not one per entry).
      if (this.phase !== 'live') {
        this.buffer(entries.slice(i));
        break;
      }
      this.accept(entries[i]);
    }
  }

  /** Takes one live entry in order; a gap switches to catch-up. */
  private accept(e: LogEntry): void {
    const expected = this.nextExpected();
    if (e.lsn < expected) {
      // Already have an entry there; one of a newer epoch than our last means our tail diverged.
      if (e.epoch > this.ctx.store.lastEntryEpoch && this.pending.length === 0) void this.catchUp('diverged');
      return;
    }
    if (e.lsn > expected) {
      this.refuse(`entry ${e.lsn} out of order: expected ${expected}; catching up from the leader`);
      this.buffer([e]);
      void this.catchUp('gap');
      return;
    }
    this.pending.push(e);
    if (!this.applyScheduled) {
      this.applyScheduled = true;
      setImmediate(() => this.applyPending());
    }
  }

  private nextExpected(): number {
    const p = this.pending;
    return (p.length ? p[p.length - 1].lsn : this.ctx.store.lastLsn) + 1;
  }

  private buffer(entries: LogEntry[]): void {
    for (const e of entries) {
      if (this.buffered.length >= CATCHUP_BUFFER_ENTRIES_MAX || this.bufferedBytes + e.payload.length > CATCHUP_BUFFER_BYTES_MAX) {
        this.buffered = []; // the catch-up will fetch them from the log instead
        this.bufferedBytes = 0;
      }
      this.buffered.push(e);
      this.bufferedBytes += e.payload.length;
    }
  }

  private applyPending(): void {
    this.applyScheduled = false;
    if (this.stopped || this.pending.length === 0) return;
    const entries = this.pending;
    this.pending = [];
    this.apply(entries);
  }

  /** Applies entries in one transaction and acknowledges. A divergence is fatal. */
  private apply(entries: LogEntry[]): void {
    try {
      this.ctx.store.applyEntries(entries);
    } catch (err) {
      const e = err as Error;
      this.ctx.log.error('apply failed: this replica cannot follow the log', { err: e.message, lsn: entries[0]?.lsn });
      this.ctx.fatal(err instanceof DivergenceError ? err : new DivergenceError(e.message));
      return;
    }
    const last = this.ctx.store.lastLsn;
    this.freshness.applied(last);
    this.firstUnappliedTs = 0;
    if (this.received > last && this.buffered.length + this.pending.length > 0) {
      const next = this.pending[0] ?? this.buffered[0];
      this.firstUnappliedTs = next?.ts ?? 0;
    }
    if (this.flushUrgent()) {
      // A write waits for our flush: the ack goes out when it is done, carrying applied too.
      this.flush();
    } else {
      if (!this.flushTimer) this.flushTimer = this.ctx.clock.setTimeout(() => this.flush(), FLUSH_INTERVAL_MS);
      this.sendAck();
    }
    this.onApplied();
  }

  /**
   * fdatasync of what was applied, on a libuv thread: the event loop applies the next entries
   * meanwhile. One flush at a time; entries applied during it are covered by the next one. The
   * ack that follows reports them as flushed.
   */
  private flush(): void {
    this.flushTimer?.cancel();
    this.flushTimer = null;
    if (this.stopped || this.flushed >= this.ctx.store.lastLsn) return;
    this.flusher.request();
  }

  sendAck(): void {
    // A seeding follower's database is about to be replaced: its position means nothing yet. Nor
    // does one the leader has not checked: its tail may be an old leader's transactions, which the
    // leader would count as copies of its own at the same LSNs.
    if (this.phase === 'seeding' || !this.checked) return;
    const lsn = String(this.ctx.store.lastLsn);
    const ack: AckMessage = {
      type: 'ack',
      v: PROTOCOL_VERSION,
      node: this.ctx.node,
      epoch: this.epoch,
      received: String(Math.max(this.received, this.ctx.store.lastLsn)),
      flushed: String(Math.min(this.flushed, this.ctx.store.lastLsn)),
      applied: lsn,
      live: this.phase === 'live',
    };
    this.ctx.transport.publish(this.ctx.subjects.ack, encode(ack));
  }

  // ---- catch-up -------------------------------------------------------------------------------

  private async catchUp(reason: string): Promise<void> {
    if (this.phase === 'catching-up' && reason !== 'start') return;
    if (this.phase === 'seeding') return;
    this.phase = 'catching-up';
    const { store, log, transport, subjects, clock, counters } = this.ctx;
    // Entries already queued for apply go first, so the position we ask from is exact.
    this.applyPending();
    const from = store.lastLsn;
    const started = clock.monotonic();
    let fetched = 0;
    let announced = false;
    let lastSilenceLogMono = Number.NEGATIVE_INFINITY;
    while (!this.stopped) {
      const req: CatchupRequest = {
        type: 'catchup',
        v: PROTOCOL_VERSION,
        node: this.ctx.node,
        epoch: this.epoch,
        after: String(store.lastLsn),
        lastEpoch: store.epochAt(store.lastLsn),
        maxBytes: CATCHUP_REQUEST_BYTES,
      };
      try {
        // Asked of the leader we follow now, by name, with a short timeout: when leadership moves
        // meanwhile, the next round asks the new leader instead of waiting on the old one.
        const reply = decodeCatchupReply(await transport.request(subjects.catchup(this.leader), encode(req), CATCHUP_REQUEST_TIMEOUT_MS));
        // Stopped meanwhile (this node leads now, or shuts down): the store is no follower's any more.
        if (this.stopped) return;
        if (reply.epoch < this.epoch) throw new FlotillaError(ErrorCode.STALE_EPOCH, `catch-up answered by ${reply.leader} at old epoch ${reply.epoch}`);
        if (reply.type === 'catchup-diverged') {
          await this.rewind(parseLsn(reply.truncateAfter), reply.leader);
          store.mergeEpochHistory(reply.epochs);
          continue;
        }
        store.mergeEpochHistory(reply.epochs);
        if (!this.checked && reply.leader === this.leader) {
          this.checked = true;
          log.info('log checked against the leader: serving reads', { leader: reply.leader, lsn: store.lastLsn });
        }
        this.leaderLsn = Math.max(this.leaderLsn, parseLsn(reply.leaderLsn));
        if (!announced && this.leaderLsn > store.lastLsn) {
          announced = true;
          counters.inc('catchups');
          log.info('catch-up started', { reason, from, leaderLsn: this.leaderLsn, leader: reply.leader });
        }
        const entries = reply.entries.map(fromWire).filter((e) => e.lsn > store.lastLsn);
        const bad = entries.find((e) => payloadCrc(e.payload) !== e.crc);
        if (bad) {
          // Refused (and counted) once per entry, however often the retry gets it again.
          if (bad.lsn !== this.lastRefusedCatchupLsn) this.refuse(`catch-up entry ${bad.lsn} from ${reply.leader}: bad checksum; asking again`, 'catchup');
          this.lastRefusedCatchupLsn = bad.lsn;
          await this.delay(RETRY_DELAY_MS);
          continue;
        }
        if (entries.length > 0) {
          this.apply(entries);
          if (this.stopped) return;
          fetched += entries.length;
          counters.inc('catchupEntries', entries.length);
        }
        if (entries.length === 0 || store.lastLsn >= parseLsn(reply.leaderLsn)) break;
      } catch (err) {
        if (err instanceof FlotillaError && err.code === ErrorCode.SNAPSHOT_NEEDED) {
          await this.seed(err.message);
          continue;
        }
        // No answer (no leader there yet, a timeout): logged at the first and then every
        // CATCHUP_SILENCE_LOG_MS, so a follower that cannot reach its leader says so.
        const quiet = err instanceof TransportError;
        const now = clock.monotonic();
        if (!quiet || now - lastSilenceLogMono >= CATCHUP_SILENCE_LOG_MS) {
          if (quiet) lastSilenceLogMono = now;
          log.warn('catch-up request failed; retrying', { err: (err as Error).message, leader: this.leader });
        }
        await this.delay(RETRY_DELAY_MS);
      }
    }
    if (this.stopped) return;
    // Back to live: first whatever arrived meanwhile, in order.
    const buffered = this.buffered.sort((a, b) => a.lsn - b.lsn);
    this.buffered = [];
    this.bufferedBytes = 0;
    this.phase = 'live';
    if (announced) log.info('catch-up finished', { entries: fetched, lsn: store.lastLsn, ms: Math.round(clock.monotonic() - started) });
    // Entries that still do not follow are dropped, not chased: the next genuine entry of the
    // stream starts a new catch-up if one is needed, so a stray message cannot cause a loop.
    for (const e of buffered) {
      const expected = this.nextExpected();
      if (e.lsn < expected) continue;
      // From a leader deposed meanwhile: past the new leader's log end it is no transaction of the
      // new leader's history (theirs at these LSNs come on the stream, in this epoch).
      if (e.epoch < this.epoch) {
        // Skipped, not a stop: the new leader's own entry at the same LSN may come right after it.
        this.refuse(`entry ${e.lsn} of epoch ${e.epoch}, buffered before the leader changed (epoch ${this.epoch}): dropped`);
        continue;
      }
      if (e.lsn > expected) {
        this.refuse(`entry ${e.lsn} out of order after catch-up (at ${expected - 1}, leader at ${this.leaderLsn}): dropped`);
        break;
      }
      this.accept(e);
    }
    // What was dropped was not received: a heartbeat announcing it must find it missing and ask.
    this.received = this.nextExpected() - 1;
    this.sendAck();
  }

  // ---- rewind ---------------------------------------------------------------------------------

  /**
   * Our log has transactions after `to` that the leader never had: undo them with their
   * before-images and keep them in the quarantine; where that is impossible, keep them and re-seed.
   */
  private async rewind(to: number, leader: string): Promise<void> {
    const { store, log, counters } = this.ctx;
    const from = store.lastLsn;
    log.warn('log diverged from the leader: rewinding', { leader, from, to, discarding: from - to });
    try {
      const undone = store.rewindTo(to);
      // What was proven fresh included the transactions just undone.
      this.freshness.reset();
      // LSNs above `to` will name the leader's transactions, not the flushed ones just undone: they
      // count as flushed only after a flush of their own (a flush running now resolves with 0).
      this.flushed = Math.min(this.flushed, store.lastLsn);
      counters.inc('rewinds');
      counters.inc('discardedTransactions', undone.length);
      this.received = store.lastLsn;
      log.warn('rewind finished: transactions discarded and kept in the quarantine', {
        lsn: store.lastLsn,
        discarded: undone.map((e) => ({ lsn: e.lsn, epoch: e.epoch })),
      });
    } catch (err) {
      const kept = store.quarantineAfter(to);
      counters.inc('discardedTransactions', kept);
      log.warn('rewind impossible: kept the diverged transactions, re-seeding from a snapshot', { err: (err as Error).message, kept });
      await this.seed(`rewind impossible: ${(err as Error).message}`);
    }
  }

  // ---- snapshot seeding -----------------------------------------------------------------------

  /**
   * Replaces this replica's database with the leader's snapshot, in small steps: begin (the leader
   * fixes the LSN) → fetch chunks while the leader still makes the file → fetch the hashes of the
   * finished file and fetch again any chunk that changed since it was sent → flush → install.
   */
  private async seed(reason: string): Promise<void> {
    const { store, log, transport, subjects, clock, counters, node } = this.ctx;
    this.phase = 'seeding';
    // The database is about to be replaced (after a divergence, possibly by an older LSN).
    this.freshness.reset();
    const started = clock.monotonic();
    log.info('snapshot seeding started', { reason, lsn: store.lastLsn });
    const tmp = seedFileFor(store.file);
    let writer: SnapshotFileWriter | null = null;
    const from = this.leader;
    const ask: SnapshotAsk = async (m, timeoutMs) => decodeSnapshotReply(await transport.request(subjects.snapshot(from), encode(m), timeoutMs));
    let begunId: string | null = null;
    try {
      const begun = await ask({ type: 'snapshot-begin', v: PROTOCOL_VERSION, node }, SNAPSHOT_BEGIN_TIMEOUT_MS);
      if (begun.type !== 'snapshot-started') throw new ProtocolError(`snapshot-begin answered with ${begun.type}`);
      begunId = begun.id;
      log.info('snapshot offered', { id: begun.id, lsn: begun.lsn, chunkBytes: begun.chunkBytes });
      removeInBackground(this.ctx, tmp, 'an earlier snapshot file');
      writer = SnapshotFileWriter.create(tmp);
      const received = await this.fetchSnapshotChunks(ask, begun, writer);
      const refetched = await this.verifySnapshotChunks(ask, begun, received, writer);
      await writer.finish();
      writer = null;
      // A node that stopped following (it leads now, or shuts down) must not swap its database.
      if (this.stopped) throw new Error('the follower role stopped');
      begunId = null;
      await ask({ type: 'snapshot-end', v: PROTOCOL_VERSION, id: begun.id }, 5000).catch(() => undefined);
      if (this.stopped) throw new Error('the follower role stopped');
      const replaced = store.replaceWithSnapshot(tmp);
      // The file was fsynced and its rename too: durable at the snapshot's LSN, and no further
      // (after a divergence that may be below what this replica reported flushed before).
      this.flushed = store.lastLsn;
      counters.inc('snapshotsInstalled');
      if (replaced) removeInBackground(this.ctx, replaced, 'the database the snapshot replaced');
      this.received = Math.max(this.received, store.lastLsn);
      // Proven fresh against the replaced database: nothing of it holds for this one.
      this.freshness.reset();
      // Reads waiting for an LSN the snapshot brought need not wait out their bound.
      this.onApplied();
      const ms = Math.round(clock.monotonic() - started);
      const bytes = received.info.bytes;
      log.info('snapshot seeding finished', { lsn: store.lastLsn, bytes, refetchedChunks: refetched, ms, mbPerS: +(bytes / 1e6 / Math.max(ms / 1000, 0.001)).toFixed(1) });
    } catch (err) {
      log.warn('snapshot seeding failed; retrying', { err: (err as Error).message });
      // The leader may drop its copy now rather than when it goes idle.
      if (begunId !== null) void ask({ type: 'snapshot-end', v: PROTOCOL_VERSION, id: begunId }, 5000).catch(() => undefined);
      await writer?.abandon();
      removeInBackground(this.ctx, tmp, 'the snapshot file of a failed seed');
      await this.delay(RETRY_DELAY_MS * 4);
    } finally {
      this.seedProgress = null;
      this.phase = 'catching-up';
    }
  }

  /**
   * Fetches chunk 0, 1, … with {@link SNAPSHOT_CHUNKS_IN_FLIGHT} requests in flight and queues
   * each for writing, until the leader says where the finished file ends. Returns that, and the
   * SHA-256 of every chunk as received.
   */
  private async fetchSnapshotChunks(ask: SnapshotAsk, snap: SnapshotStarted, writer: SnapshotFileWriter): Promise<ReceivedSnapshot> {
    const { clock, log } = this.ctx;
    const timeoutMs = Math.max(this.ctx.config.requestTimeoutMs, 2 * SNAPSHOT_HOLD_MS);
    const fetch = (index: number) => ask({ type: 'snapshot-chunk', v: PROTOCOL_VERSION, id: snap.id, index }, timeoutMs);
    const inFlight = new Map<number, Promise<SnapshotReply>>();
    const hashes: Buffer[] = [];
    const sizes: number[] = [];
    let info: SnapshotInfo | null = null;
    let next = 0;
    let done = 0;
    let lastReportMono = clock.monotonic();
    this.seedProgress = { bytes: 0, done: 0 };
    try {
      for (let i = 0; info === null || i < info.chunks; ) {
        if (this.stopped) throw new Error('the follower role stopped');
        while (inFlight.size < SNAPSHOT_CHUNKS_IN_FLIGHT && (info === null || next < info.chunks)) inFlight.set(next, fetch(next++));
        const reply = await inFlight.get(i)!;
        inFlight.delete(i);
        if (reply.type === 'snapshot-wait') {
          inFlight.set(i, fetch(i));
          continue;
        }
        if (reply.type === 'snapshot-info') {
          if (reply.id !== snap.id || reply.lsn !== snap.lsn || reply.chunkBytes !== snap.chunkBytes || reply.chunks !== i) {
            throw new ProtocolError(`snapshot ${snap.id}: chunk ${i} answered as past the end of ${reply.id} (${reply.chunks} chunks)`);
          }
          info = reply;
          this.seedProgress.bytes = info.bytes;
          continue;
        }
        if (reply.type !== 'frame' || reply.frame !== SnapshotFrame.CHUNK || reply.index !== i || reply.payload.length === 0 || reply.payload.length > snap.chunkBytes) {
          throw new ProtocolError(`snapshot ${snap.id}: chunk ${i} answered with ${reply.type === 'frame' ? `${reply.frame} ${reply.index}, ${reply.payload.length} bytes` : reply.type}`);
        }
        hashes[i] = sha256(reply.payload);
        sizes[i] = reply.payload.length;
        await writer.write(i * snap.chunkBytes, reply.payload);
        done += reply.payload.length;
        this.seedProgress.done = done;
        if (clock.monotonic() - lastReportMono >= SNAPSHOT_PROGRESS_LOG_MS) {
          lastReportMono = clock.monotonic();
          log.info('snapshot progress', { bytes: done });
        }
        i++;
      }
    } finally {
      for (const p of inFlight.values()) p.catch(() => undefined);
    }
    const lastSize = info.bytes - (info.chunks - 1) * info.chunkBytes;
    const badSize = sizes.findIndex((n, i) => n !== (i === info.chunks - 1 ? lastSize : info.chunkBytes));
    if (badSize >= 0) throw new ProtocolError(`snapshot ${snap.id}: chunk ${badSize} has ${sizes[badSize]} bytes`);
    return { info, hashes };
  }

  /**
   * Compares the hash of every chunk written with the leader's hash of its finished file, fetches
   * again the chunks that differ (sent before they were final), and throws if any still differs:
   * a snapshot is installed only when every byte matches. Returns how many were fetched again.
   */
  private async verifySnapshotChunks(ask: SnapshotAsk, snap: SnapshotStarted, received: ReceivedSnapshot, writer: SnapshotFileWriter): Promise<number> {
    const { info, hashes } = received;
    const timeoutMs = Math.max(this.ctx.config.requestTimeoutMs, 2 * SNAPSHOT_HOLD_MS);
    const theirs = Buffer.alloc(32 * info.chunks);
    for (let from = 0; from < info.chunks; ) {
      const r = await ask({ type: 'snapshot-hashes', v: PROTOCOL_VERSION, id: snap.id, from }, timeoutMs);
      if (r.type === 'snapshot-wait') continue;
      const count = r.type === 'frame' ? r.payload.length / 32 : 0;
      if (r.type !== 'frame' || r.frame !== SnapshotFrame.HASHES || r.index !== from || !Number.isInteger(count) || count === 0 || from + count > info.chunks) {
        throw new ProtocolError(`snapshot ${snap.id}: hashes from ${from} answered with ${r.type === 'frame' ? `${r.frame} ${r.index}, ${r.payload.length} bytes` : r.type}`);
      }
      theirs.set(r.payload, 32 * from);
      from += count;
    }
    const differs = (i: number) => !hashes[i].equals(theirs.subarray(32 * i, 32 * i + 32));
    const stale = hashes.map((_, i) => i).filter(differs);
    if (stale.length > 0) this.ctx.log.info('snapshot chunks changed after they were sent: fetching them again', { chunks: stale.length, first: stale.slice(0, 10) });
    for (const i of stale) {
      let r: SnapshotReply;
      do r = await ask({ type: 'snapshot-chunk', v: PROTOCOL_VERSION, id: snap.id, index: i }, timeoutMs);
      while (r.type === 'snapshot-wait');
      if (r.type !== 'frame' || r.frame !== SnapshotFrame.CHUNK || r.index !== i) throw new ProtocolError(`snapshot ${snap.id}: chunk ${i} answered with ${r.type}`);
      hashes[i] = sha256(r.payload);
      if (differs(i)) throw new Error(`snapshot ${snap.id}: checksum mismatch in chunk ${i}`);
      await writer.write(i * snap.chunkBytes, r.payload);
    }
    return stale.length;
  }

  private delay(ms: number): Promise<void> {
    return new Promise((r) => this.ctx.clock.setTimeout(r, ms));
  }

  private refuse(reason: string, channel: 'log' | 'catchup' = 'log'): void {
    this.ctx.counters.inc('refused');
    this.ctx.log.warn('refused message', { channel, reason });
  }
}

function fromWire(w: WireEntry): LogEntry {
  return { lsn: parseLsn(w.lsn), epoch: w.epoch, ts: w.ts, crc: w.crc, payload: w.payload };
}

