/**
 * The leader role: takes writes, commits them in groups, publishes the change stream, answers
 * catch-up and snapshot requests, and tracks follower positions.
 *
 * Hot path: write request → queue → one SQLite transaction for everything queued (group commit,
 * a savepoint per request) → publish the new entries as one message (async-only entries batched
 * for up to streamBatchMs) → reply to each client once durable as asked.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import {
  AckMessage,
  BatchItem,
  BatchReplies,
  CatchupDiverged,
  CatchupReply,
  ClusterSettings,
  decodeAck,
  decodeBatchFrame,
  decodeCatchupRequest,
  decodeEnvelope,
  encode,
  ErrorCode,
  errorReply,
  FlotillaError,
  isBatchFrame,
  LogBatch,
  parseLsn,
  PROTOCOL_VERSION,
  ProtocolError,
  allocSnapshotFrame,
  SNAPSHOT_FRAME_HEADER_BYTES,
  SnapshotFrame,
  SnapshotInfo,
  SnapshotStarted,
  SnapshotWait,
  WireEntry,
  WriteReply,
  WriteRequest,
} from '@flotilla/protocol';
import type { LogEntry, SnapshotFile, WriteOutcome } from '@flotilla/storage';
import { isTurnSpent, servedSnapshotsDirFor, SQL_TURN_TICK_MS } from '@flotilla/storage';
import type { Subscription } from '@flotilla/transport';
import type { Timer } from '@flotilla/logging';
import type { RoleContext } from './context';
import { removeInBackground } from './remove-in-background';
import { SyncTracker, unreachableDurability } from './sync-tracker';
import { StreamBatcher } from './stream-batcher';
import { validateWriteRequest } from './validate';
import { WalFlusher } from './wal-flusher';

/** A group commit slower than this is logged (a disk or CPU stall the operator should see). */
export const SLOW_COMMIT_MS = 50;
/** How often waiting writes are checked against syncTimeoutMs. */
export const SYNC_TICK_MS = 20;

/** Most requests committed in one group. */
export const GROUP_COMMIT_REQUESTS_MAX = 512;
/** The answer to a write this role took but never ran (it stopped leading first): safe to retry. */
const STOPPED_BEFORE_RUN = 'this node stopped leading before the write ran';
/** Change-stream messages are filled up to this many payload bytes (before escaping). */
export const LOG_MESSAGE_BYTES_MAX = 768 * 1024;
/**
 * A message that still encodes larger than this (escaping grows a payload) is split: NATS refuses
 * payloads over 1 MiB by default, and a refused publish would throw on the commit path.
 */
export const NATS_MESSAGE_BYTES_MAX = 1024 * 1024 - 8 * 1024;
/** A snapshot nobody asked a chunk of for this long is deleted. */
export const SNAPSHOT_IDLE_MS = 60_000;
/** A request for a chunk (or hashes) not made yet is held this long, then answered `snapshot-wait`. */
export const SNAPSHOT_HOLD_MS = 1000;
/** Chunk hashes per `snapshot-hashes` reply: 32 bytes each, 512 KiB, under NATS's 1 MiB payload limit. */
export const SNAPSHOT_HASHES_PER_REPLY = 16 * 1024;

export interface FollowerPosition {
  node: string;
  received: number;
  flushed: number;
  applied: number;
  /** Monotonic time of the last ack. */
  seenAtMono: number;
}

interface QueuedWrite {
  req: WriteRequest;
  respond: (data: Uint8Array) => void;
  /** Turns this write waited because other requests took the turn's SQL time (statementTimeoutMs). */
  deferrals?: number;
}

/** A write deferred this many turns in a row (each took by others) gets the store's 503 instead. */
export const WRITE_DEFERRALS_MAX = 50;

/** A chunk or hashes request waiting for the snapshot to get that far. */
interface SnapshotWaiter {
  kind: 'chunk' | 'hashes';
  /** Chunk index, or the first chunk whose hash is asked for. */
  n: number;
  respond: (data: Uint8Array) => void;
  timer: Timer;
}

interface ServedSnapshot {
  id: string;
  forNode: string;
  file: string;
  /** Open from the moment the worker started the file until the snapshot is dropped. */
  handle: fs.promises.FileHandle | null;
  chunkBytes: number;
  lsn: number;
  epoch: number;
  /** Bytes from the start that may be sent now (most likely final; checked by hash at the end). */
  settledBytes: number;
  /** The file's size once it is complete (it no longer changes then). */
  bytes: number | null;
  /** SHA-256 of every chunk of the complete file, once computed. */
  hashes: Buffer | null;
  waiters: Set<SnapshotWaiter>;
  lastUseMono: number;
  abort: AbortController;
  dropped: boolean;
}

export class LeaderRole {
  private subs: Subscription[] = [];
  private queue: QueuedWrite[] = [];
  private flushScheduled = false;
  private stopped = false;
  readonly followers = new Map<string, FollowerPosition>();

  /**
   * LSNs of the snapshots being served: the seeding node will ask for everything after its one,
   * so retention keeps it (a temporary replication slot), within the log's hard limits.
   */
  get servedSnapshotLsns(): number[] {
    return [...this.snapshots.values()].filter((s) => s.lsn > 0).map((s) => s.lsn);
  }
  private snapshots = new Map<string, ServedSnapshot>();
  private writeSub: Subscription | null = null;
  private lastDroppedLogMono = Number.NEGATIVE_INFINITY;
  private snapshotInProgress: Promise<SnapshotFile> | null = null;
  private tickTimer: Timer | null = null;
  /** The change stream: entries no write waits for are batched (config streamBatchMs). */
  private readonly stream: StreamBatcher<LogEntry>;
  /** Highest LSN fdatasync'd here; writes above it wait in localWaiters (ascending LSN). */
  private localFlushed = 0;
  private readonly flusher = new WalFlusher(
    () => this.ctx.store.syncWalAsync(),
    (lsn) => this.onLocalFlushed(lsn),
    (err) => {
      // The kernel may have dropped the pages it failed to write: nothing waiting is durable.
      this.ctx.log.error('fdatasync failed: this leader cannot vouch for its disk', { err: err.message });
      this.ctx.fatal(err);
    },
    () => !this.stopped,
  );
  private localWaiters: { lsn: number; sinceMono: number; q: QueuedWrite; o: WriteOutcome & { ok: true } }[] = [];
  /** Set while a switchover hands the lease on: new writes are refused (NOT_LEADER, retryable). */
  private handingOverTo: string | null = null;
  /** `node@epoch` of acks from a newer epoch already logged. */
  private readonly otherEpochAcks = new Set<string>();

  constructor(
    private readonly ctx: RoleContext,
    readonly epoch: number,
    /** True while the lease is held and cannot have expired elsewhere. */
    private readonly leaseValid: () => boolean,
    readonly sync: SyncTracker,
    /** Names of the replicas this node knows (itself included), or null while it cannot tell yet. */
    private readonly knownReplicas: () => readonly string[] | null = () => null,
  ) {
    this.stream = new StreamBatcher(ctx.clock, ctx.config.streamBatchMs, (entries) => this.publish(entries));
  }

  start(): void {
    const { transport, subjects, clock } = this.ctx;
    // The role starts from a flushed store (ReplicaNode syncs it before handing over).
    this.localFlushed = this.ctx.store.lastLsn;
    this.sync.noteCommitted(this.ctx.store.lastLsn);
    this.tickTimer = clock.setInterval(() => {
      this.sync.tick(clock.monotonic());
      // Snapshots of followers that died or gave up mid-seed: their files must not wait for the next request.
      if (this.snapshots.size > 0) this.expireSnapshots();
      this.followWriteSubject();
    }, SYNC_TICK_MS);
    this.writeSub = transport.subscribe(subjects.write, (m) => this.onNatsWrite(m.data, m.respond));
    this.subs.push(transport.subscribe(subjects.ack, (m) => this.onAck(m.data)));
    this.subs.push(transport.subscribe(subjects.catchup(this.ctx.node), (m) => this.onCatchup(m.data, m.respond)));
    this.subs.push(transport.subscribe(subjects.snapshot(this.ctx.node), (m) => void this.onSnapshot(m.data, m.respond)));
  }

  /** Stops taking writes; queued ones are answered NOT_LEADER (they were never applied). */
  stop(): void {
    this.stopped = true;
    this.tickTimer?.cancel();
    // Held entries are committed (some acknowledged, in async mode): send them while the
    // connection may still carry them (flush also drops the timer); a follower that misses them
    // fetches them by catch-up.
    try {
      this.stream.flush();
    } catch (err) {
      this.ctx.log.warn('held change-stream entries not published at stop', { err: (err as Error).message });
    }
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    this.writeSub?.unsubscribe();
    this.writeSub = null;
    const err = encode(errorReply({ code: ErrorCode.NOT_LEADER, message: STOPPED_BEFORE_RUN }));
    for (const q of this.queue) q.respond(err);
    this.queue = [];
    const notDurable = encode(errorReply({ code: ErrorCode.NOT_LEADER, message: 'this node stopped leading before the write was durable', committed: true }));
    for (const w of this.localWaiters) w.q.respond(notDurable);
    this.localWaiters = [];
    // Committed here but not yet durable as required: never reported committed. A retry with
    // the same idempotency key is answered by the new leader, once, whichever way it went.
    this.sync.abortAll('this node stopped leading before the write was replicated as required');
    for (const s of this.snapshots.values()) this.dropSnapshot(s);
  }

  // ---- writes ---------------------------------------------------------------------------------

  /**
   * A write request (or batch frame) from this process rather than from NATS: the replica's own
   * REST API when this node leads. Same path as the `write` subject, so the same group commit,
   * fencing and durability; resolves with the encoded reply (an error reply included).
   */
  submitWrite(data: Uint8Array): Promise<Uint8Array> {
    return new Promise((resolve) => this.onWrite(data, resolve));
  }

  /**
   * Takes writes from NATS only while the lease is valid. Otherwise another node may lead and get
   * the same message (two subscribers on `write` after this one's connection came back, or a
   * pause): a refusal from here would then reach the client first and tell it "not applied" while
   * the real leader applies it, and a retry would apply it twice. So nothing is answered, and the
   * subscription goes until the lease is renewed: with no other leader the sender hears "no
   * responders" (never delivered, safe to retry).
   */
  private onNatsWrite(data: Uint8Array, respond?: (d: Uint8Array) => void): void {
    if (!this.leaseValid()) {
      const now = this.ctx.clock.monotonic();
      if (now - this.lastDroppedLogMono >= 1000) {
        this.lastDroppedLogMono = now;
        this.ctx.log.warn('write from NATS not taken: the lease is not valid (another node may lead)', { epoch: this.epoch });
      }
      this.followWriteSubject();
      return;
    }
    this.onWrite(data, respond);
  }

  /** Subscribed to `write` exactly while the lease is valid (checked every tick and on each write). */
  private followWriteSubject(): void {
    if (this.stopped) return;
    const valid = this.leaseValid();
    if (!valid && this.writeSub) {
      this.writeSub.unsubscribe();
      this.writeSub = null;
      this.ctx.log.warn('lease not valid: taking no writes from NATS until it is renewed', { epoch: this.epoch });
    } else if (valid && !this.writeSub) {
      this.writeSub = this.ctx.transport.subscribe(this.ctx.subjects.write, (m) => this.onNatsWrite(m.data, m.respond));
      this.ctx.log.info('lease valid again: taking writes from NATS', { epoch: this.epoch });
    }
  }

  private onWrite(data: Uint8Array, respond?: (d: Uint8Array) => void): void {
    if (!respond) return;
    // A reply that cannot be sent (too large for NATS, the connection gone) is logged, never
    // thrown: it would escape the group commit's flush and end the process.
    const send = (d: Uint8Array) => {
      try {
        respond(d);
      } catch (err) {
        this.ctx.log.error('write reply not sent', { err: (err as Error).message, bytes: d.length });
      }
    };
    if (isBatchFrame(data)) return this.onWriteFrame(data, send);
    this.admitWrite(data, send);
  }

  /**
   * The writes a gateway sent together: each is validated and queued on its own (one bad write
   * fails alone) and its reply goes back in a frame with the others that finish at the same time.
   */
  private onWriteFrame(data: Uint8Array, respond: (d: Uint8Array) => void): void {
    let items: BatchItem[];
    try {
      items = decodeBatchFrame(data);
    } catch (err) {
      this.refuse('write', err);
      respond(encode(errorReply({ code: ErrorCode.BAD_REQUEST, message: (err as Error).message })));
      return;
    }
    const replies = new BatchReplies(respond);
    for (const it of items) this.admitWrite(it.data, (d) => replies.add(it.id, d));
  }

  private admitWrite(data: Uint8Array, respond: (d: Uint8Array) => void): void {
    // A stopped role never flushes its queue again: whatever arrives now is answered at once.
    if (this.stopped) return respond(encode(errorReply({ code: ErrorCode.NOT_LEADER, message: STOPPED_BEFORE_RUN })));
    let req: WriteRequest;
    try {
      req = validateWriteRequest(decodeEnvelope(data));
    } catch (err) {
      this.refuse('write', err);
      respond(encode(errorReply({ code: ErrorCode.BAD_REQUEST, message: (err as Error).message })));
      return;
    }
    // More copies than there are replicas: it would commit, then fail after syncTimeoutMs. (Only
    // `{replicas: n}` asks, so the common write does not build the list of replicas.)
    if (typeof req.durability === 'object') {
      const unreachable = unreachableDurability(req.durability, this.knownReplicas());
      if (unreachable) return respond(encode(errorReply({ code: unreachable.code, message: unreachable.message })));
    }
    this.queue.push({ req, respond });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.stopped) return;
    const { clock, store, log } = this.ctx;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, GROUP_COMMIT_REQUESTS_MAX);
      if (this.handingOverTo !== null) {
        const err = encode(errorReply({ code: ErrorCode.NOT_LEADER, message: `switchover to ${this.handingOverTo} in progress; retry shortly`, leaderHint: this.handingOverTo }));
        for (const q of batch) q.respond(err);
        continue;
      }
      if (!this.leaseValid()) {
        const err = encode(errorReply({ code: ErrorCode.LEASE_EXPIRED, message: 'the leader could not renew its lease; retry shortly' }));
        for (const q of batch) q.respond(err);
        continue;
      }
      let outcomes: WriteOutcome[];
      const commitStart = clock.monotonic();
      try {
        outcomes = store.executeBatch(
          batch.map((q) => ({ statements: q.req.statements, idempotencyKey: q.req.idempotencyKey })),
          this.epoch,
        );
      } catch (err) {
        log.error('group commit failed; nothing of it was applied', { err: (err as Error).message, requests: batch.length });
        const e = encode(errorReply({ code: ErrorCode.UNAVAILABLE, message: `commit failed: ${(err as Error).message}` }));
        for (const q of batch) q.respond(e);
        continue;
      }
      const commitMs = clock.monotonic() - commitStart;
      if (commitMs > SLOW_COMMIT_MS) log.warn('slow commit', { ms: Math.round(commitMs), requests: batch.length, lsn: store.lastLsn });
      const entries: LogEntry[] = [];
      let awaited = false;
      for (let i = 0; i < outcomes.length; i++) {
        const o = outcomes[i];
        if (!o.ok || !o.entry) continue;
        entries.push(o.entry);
        awaited ||= this.sync.mustWait(batch[i].req.durability);
      }
      // Followers get the entries while this node's own fdatasync runs (as Raft leaders write their
      // disk in parallel with replicating): a write is acknowledged only once it is durable here
      // AND on the followers its durability asks for, so the order of the two flushes is free.
      // Entries no write waits for may be held up to streamBatchMs and go with later ones.
      this.stream.add(entries, awaited);
      this.sync.noteCommitted(store.lastLsn);
      // fdatasync of the WAL on a libuv thread, one at a time (WalFlusher): the event loop commits
      // the next group meanwhile and the next flush covers it; waiting writes go on in onLocalFlushed.
      if (entries.length > 0) this.flusher.request();
      const now = clock.monotonic();
      const later: QueuedWrite[] = [];
      outcomes.forEach((o, i) => {
        const q = batch[i];
        if (!o.ok && isTurnSpent(o.error)) {
          q.deferrals = (q.deferrals ?? 0) + 1;
          if (q.deferrals <= WRITE_DEFERRALS_MAX) return later.push(q);
        }
        if (!o.ok) return q.respond(encode(this.replyOf(o)));
        if (o.lsn <= this.localFlushed) return this.acknowledge(q, o);
        this.localWaiters.push({ lsn: o.lsn, sinceMono: now, q, o });
      });
      if (later.length > 0) {
        // Other requests' SQL took this turn's time (statementTimeoutMs): these did not run, or
        // were rolled back. They go first in a later turn, after the timers (lease renewal) ran.
        this.queue.unshift(...later);
        this.flushScheduled = true;
        clock.setTimeout(() => this.flush(), SQL_TURN_TICK_MS);
        return;
      }
    }
  }

  /** Once durable here: acknowledge, or wait for the followers the durability asks for. */
  private acknowledge(q: QueuedWrite, o: WriteOutcome & { ok: true }): void {
    // The commit or its flush may have run past the lease (a pause, a slow disk): then this node
    // may already be deposed and the write may be rewound. Do not acknowledge it.
    if (!this.leaseValid()) {
      return q.respond(encode(errorReply({ code: ErrorCode.LEASE_EXPIRED, message: 'the lease ran out while the write committed; it is not acknowledged', committed: true })));
    }
    if (!this.sync.mustWait(q.req.durability)) return q.respond(encode(this.replyOf(o)));
    this.sync.wait(o.lsn, q.req.durability, this.ctx.clock.monotonic(), (w) => {
      if (!w.ok) return q.respond(encode(errorReply({ code: ErrorCode.NOT_ENOUGH_REPLICAS, message: `not acknowledged: ${w.reason}`, committed: true })));
      // The wait may have outlasted the lease (a late ack, or `degrade` giving up on the followers
      // while this node was cut off): another node may lead by now without this write.
      if (!this.leaseValid()) {
        return q.respond(encode(errorReply({ code: ErrorCode.LEASE_EXPIRED, message: 'the lease ran out while the write waited for its followers; it is not acknowledged', committed: true })));
      }
      q.respond(encode(this.replyOf(o)));
    });
  }

  private onLocalFlushed(lsn: number): void {
    // How long the oldest write it releases waited for the disk (after its commit).
    const oldest = this.localWaiters[0];
    if (oldest && oldest.lsn <= lsn) {
      const ms = this.ctx.clock.monotonic() - oldest.sinceMono;
      if (ms > SLOW_COMMIT_MS) this.ctx.log.warn('slow flush', { ms: Math.round(ms), lsn, waiting: this.localWaiters.length });
    }
    this.localFlushed = Math.max(this.localFlushed, lsn);
    let n = 0;
    while (n < this.localWaiters.length && this.localWaiters[n].lsn <= this.localFlushed) n++;
    for (const w of this.localWaiters.splice(0, n)) this.acknowledge(w.q, w.o);
  }

  /** Highest LSN durable on this node's disk. */
  get flushedLsn(): number {
    return this.localFlushed;
  }

  /** Change the replication mode: recorded in the log (replicated), then applied here. */
  setSettings(settings: ClusterSettings): LogEntry {
    // The same fencing as a write: a setting is a log entry, and one this node cannot vouch for
    // could be rewound after a failover.
    if (this.stopped) throw new FlotillaError(ErrorCode.NOT_LEADER, STOPPED_BEFORE_RUN);
    if (this.handingOverTo !== null) throw new FlotillaError(ErrorCode.NOT_LEADER, `switchover to ${this.handingOverTo} in progress; retry shortly`, { leaderHint: this.handingOverTo });
    if (!this.leaseValid()) throw new FlotillaError(ErrorCode.LEASE_EXPIRED, 'the leader could not renew its lease; retry shortly');
    const entry = this.ctx.store.writeSettings(settings, this.epoch);
    this.localFlushed = Math.max(this.localFlushed, this.ctx.store.syncWal());
    this.stream.add([entry], true);
    this.sync.noteCommitted(entry.lsn);
    this.sync.configure(settings, this.ctx.clock.monotonic());
    return entry;
  }

  /**
   * Resolves once the settings entry at `lsn` (durable here already) is as durable as a write
   * under the settings it set: a switch to semi-sync is answered only when a sync follower has it,
   * so no failover can lose the switch while writes are acknowledged under it. Rejects
   * NOT_ENOUGH_REPLICAS (the policy's timeout) or LEASE_EXPIRED.
   */
  settingsDurable(lsn: number, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const notConfirmed = (why: string) => new FlotillaError(ErrorCode.NOT_ENOUGH_REPLICAS, `the setting is in force on the leader but not confirmed replicated (${why}); check /v1/cluster, or set it again`);
      const timer = this.ctx.clock.setTimeout(() => reject(notConfirmed(`no synchronous follower flushed it within ${timeoutMs} ms`)), timeoutMs);
      const done = () => {
        timer.cancel();
        if (!this.leaseValid()) reject(new FlotillaError(ErrorCode.LEASE_EXPIRED, 'the lease ran out before the setting was replicated; it may be rewound: set it again'));
        else resolve();
      };
      if (!this.sync.mustWait(undefined)) return done();
      // Strict: a degraded cluster acknowledges writes without a follower copy, but a setting is
      // confirmed only with one (or answered "in force, not confirmed").
      this.sync.wait(
        lsn,
        undefined,
        this.ctx.clock.monotonic(),
        (w) => {
          if (w.ok) done();
          else {
            timer.cancel();
            reject(notConfirmed(w.reason));
          }
        },
        { strict: true },
      );
    });
  }

  /**
   * Planned switchover: refuse new writes, wait until `to` has applied everything, then let the
   * caller hand over the lease. Resolves with the last LSN; rejects (and resumes writes) on timeout.
   */
  async drainFor(to: string, timeoutMs: number): Promise<number> {
    if (!this.followers.has(to)) throw new FlotillaError(ErrorCode.BAD_REQUEST, `${to} is not a follower of this leader`);
    this.handingOverTo = to;
    const { clock, store } = this.ctx;
    const deadline = clock.monotonic() + timeoutMs;
    // Writes already queued are answered NOT_LEADER by flush(); wait for in-flight ones to commit.
    await new Promise<void>((r) => setImmediate(r));
    this.stream.flush();
    const target = store.lastLsn;
    while ((this.followers.get(to)?.applied ?? 0) < target) {
      if (clock.monotonic() > deadline || this.stopped) {
        this.handingOverTo = null;
        throw new FlotillaError(ErrorCode.TIMEOUT, `${to} did not catch up to ${target} within ${timeoutMs} ms; writes resumed`);
      }
      await new Promise<void>((r) => clock.setTimeout(r, 5));
    }
    return target;
  }

  /** Writes resume after a failed hand-over. */
  resumeWrites(): void {
    this.handingOverTo = null;
  }

  private replyOf(o: WriteOutcome): WriteReply | ReturnType<typeof errorReply> {
    if (!o.ok) return errorReply(o.error.toWire());
    const reply: WriteReply = { type: 'write-reply', v: PROTOCOL_VERSION, lsn: String(o.lsn), epoch: o.epoch, results: o.results };
    if (o.replayed) reply.replayed = true;
    return reply;
  }

  /** Publishes entries on the live stream, split so no message exceeds LOG_MESSAGE_BYTES_MAX. */
  private publish(entries: LogEntry[]): void {
    let chunk: WireEntry[] = [];
    let bytes = 0;
    // Every message claims: nothing above the last LSN was committed here at this time (FreshnessTracker).
    const lsn = String(this.ctx.store.lastLsn);
    const ts = this.ctx.clock.now();
    const sendSplit = (entries: WireEntry[]) => {
      const batch: LogBatch = { type: 'entries', v: PROTOCOL_VERSION, epoch: this.epoch, leader: this.ctx.node, entries, lsn, ts };
      const data = encode(batch);
      if (data.length > NATS_MESSAGE_BYTES_MAX && entries.length > 1) {
        const half = entries.length >> 1;
        sendSplit(entries.slice(0, half));
        sendSplit(entries.slice(half));
        return;
      }
      // One entry always fits: the commit refused any whose escaped payload would not.
      this.ctx.transport.publish(this.ctx.subjects.log, data);
    };
    const send = () => {
      if (chunk.length === 0) return;
      sendSplit(chunk);
      chunk = [];
      bytes = 0;
    };
    for (const e of entries) {
      const size = e.payload.length + 100;
      if (bytes + size > LOG_MESSAGE_BYTES_MAX) send();
      chunk.push(toWire(e));
      bytes += size;
    }
    send();
  }

  // ---- follower positions ---------------------------------------------------------------------

  private onAck(data: Uint8Array): void {
    let ack: AckMessage;
    try {
      ack = decodeAck(data);
    } catch (err) {
      this.refuse('ack', err);
      return;
    }
    if (ack.epoch !== this.epoch) {
      // Once per sender and epoch: its acks keep coming until it (or this node) learns of the other leader.
      const key = `${ack.node}@${ack.epoch}`;
      if (!this.otherEpochAcks.has(key)) {
        if (this.otherEpochAcks.size >= 1000) this.otherEpochAcks.clear(); // bounded: keys are node@epoch
        this.otherEpochAcks.add(key);
        if (ack.epoch > this.epoch) this.ctx.log.warn('ack from a newer epoch: another leader exists', { from: ack.node, theirEpoch: ack.epoch });
        // From before this leader's time: its position is not counted until it re-sends it in ours.
        else this.ctx.log.info('ack from an older epoch refused: not counted', { from: ack.node, theirEpoch: ack.epoch });
      }
      return;
    }
    const p: FollowerPosition = {
      node: ack.node,
      received: parseLsn(ack.received),
      flushed: parseLsn(ack.flushed),
      applied: parseLsn(ack.applied),
      seenAtMono: this.ctx.clock.monotonic(),
    };
    this.followers.set(ack.node, p);
    this.sync.onAck(ack.node, p.flushed, p.seenAtMono, ack.live !== false);
  }

  // ---- catch-up -------------------------------------------------------------------------------

  private onCatchup(data: Uint8Array, respond?: (d: Uint8Array) => void): void {
    if (!respond) return;
    const { store, log } = this.ctx;
    try {
      const req = decodeCatchupRequest(data);
      const after = parseLsn(req.after);
      if (req.epoch > this.epoch) {
        throw new FlotillaError(ErrorCode.STALE_EPOCH, `this leader is at epoch ${this.epoch}, you know epoch ${req.epoch}`);
      }
      // Divergence: the follower's log goes further in its last epoch than this log does (it led,
      // or followed a leader, in an epoch whose tail never reached this node).
      const theirEpoch = typeof req.lastEpoch === 'number' ? req.lastEpoch : undefined;
      const endOfTheirEpoch = theirEpoch === undefined ? store.lastLsn : store.lastLsnOfEpoch(theirEpoch);
      if (after > endOfTheirEpoch) {
        const reply: CatchupDiverged = {
          type: 'catchup-diverged',
          v: PROTOCOL_VERSION,
          epoch: this.epoch,
          leader: this.ctx.node,
          truncateAfter: String(endOfTheirEpoch),
          epochs: store.epochHistory(),
        };
        log.warn('follower log diverged: told to rewind', { follower: req.node, theirLsn: after, theirEpoch, truncateAfter: endOfTheirEpoch });
        respond(encode(reply));
        return;
      }
      if (after > store.lastLsn) {
        throw new FlotillaError(ErrorCode.CONFLICT, `you are at ${after}, ahead of this leader's log end ${store.lastLsn}: your log has diverged`);
      }
      const oldest = store.oldestLsn();
      if ((after === 0 && store.lastLsn > 0) || after + 1 < oldest) {
        log.info('catch-up refused: snapshot needed', { follower: req.node, after, oldestRetained: oldest });
        throw new FlotillaError(ErrorCode.SNAPSHOT_NEEDED, `entries after ${after} are no longer kept (oldest is ${oldest}); seed from a snapshot`);
      }
      let entries = store.readLogAfter(after, Math.min(req.maxBytes, LOG_MESSAGE_BYTES_MAX)).map(toWire);
      const replyOf = (): Uint8Array =>
        encode({
          type: 'catchup-reply',
          v: PROTOCOL_VERSION,
          epoch: this.epoch,
          leader: this.ctx.node,
          leaderLsn: String(store.lastLsn),
          entries,
          epochs: store.epochHistory(),
        } satisfies CatchupReply);
      let out = replyOf();
      // Escaping can grow the entries past a NATS message: send fewer (the follower asks again).
      while (out.length > NATS_MESSAGE_BYTES_MAX && entries.length > 1) {
        entries = entries.slice(0, entries.length >> 1);
        out = replyOf();
      }
      respond(out);
    } catch (err) {
      if (err instanceof ProtocolError) this.refuse('catchup', err);
      const wire = err instanceof FlotillaError ? err.toWire() : { code: ErrorCode.BAD_REQUEST, message: (err as Error).message };
      respond(encode(errorReply(wire)));
    }
  }

  // ---- snapshots ------------------------------------------------------------------------------

  private async onSnapshot(data: Uint8Array, reply?: (d: Uint8Array) => void): Promise<void> {
    if (!reply) return;
    // Answers go out later too (held requests, reads off the loop): a closed connection by then
    // is no reason to fail anything, the follower times out and starts over.
    const respond = (d: Uint8Array) => {
      try {
        reply(d);
      } catch (err) {
        this.ctx.log.debug('snapshot reply not sent', { err: (err as Error).message });
      }
    };
    try {
      const m = decodeEnvelope(data);
      this.expireSnapshots();
      if (m.type === 'snapshot-begin') {
        respond(encode(await this.beginSnapshot(String(m.node))));
        return;
      }
      const s = this.snapshots.get(String(m.id));
      if (!s) throw new FlotillaError(ErrorCode.NOT_FOUND, `no snapshot ${String(m.id)}; begin a new one`);
      s.lastUseMono = this.ctx.clock.monotonic();
      if (m.type === 'snapshot-chunk' || m.type === 'snapshot-hashes') {
        const n = Number(m.type === 'snapshot-chunk' ? m.index : m.from);
        if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new ProtocolError(`${m.type}: bad chunk number ${String(m.index ?? m.from)}`);
        this.answerSnapshot(s, { kind: m.type === 'snapshot-chunk' ? 'chunk' : 'hashes', n, respond });
      } else if (m.type === 'snapshot-end') {
        this.dropSnapshot(s);
        respond(encode({ type: 'ok', v: PROTOCOL_VERSION }));
      } else {
        throw new ProtocolError(`unknown snapshot request ${m.type}`);
      }
    } catch (err) {
      this.answerSnapshotError(err, respond);
    }
  }

  private answerSnapshotError(err: unknown, respond: (d: Uint8Array) => void): void {
    if (err instanceof ProtocolError) this.refuse('snapshot', err);
    else if (!(err instanceof FlotillaError)) this.ctx.log.error('snapshot failed', { err: (err as Error).message });
    const wire = err instanceof FlotillaError ? err.toWire() : { code: ErrorCode.UNAVAILABLE, message: (err as Error).message };
    respond(encode(errorReply(wire)));
  }

  /**
   * Starts making a snapshot and answers as soon as its read transaction is open (its LSN is
   * fixed): chunks are served while the file grows.
   */
  private async beginSnapshot(forNode: string): Promise<SnapshotStarted> {
    const { store, log, config, clock } = this.ctx;
    // The node is about to replace its database: what it last reported flushed is no copy any
    // more (it sends no ack while it seeds), so it counts for no write's durability until it acks again.
    this.sync.onAck(forNode, 0, clock.monotonic(), false);
    const dir = servedSnapshotsDirFor(store.file);
    fs.mkdirSync(dir, { recursive: true });
    // One snapshot made at a time: concurrent requests wait for it and get their own copy.
    while (this.snapshotInProgress) await this.snapshotInProgress.catch(() => undefined);
    if (this.stopped) throw new FlotillaError(ErrorCode.NOT_LEADER, 'this node stopped leading; ask the new leader');
    // A node seeds from one snapshot at a time: one it began before (its seed failed, it retries)
    // is abandoned, and each is a full copy of the database on this leader's disk.
    for (const old of [...this.snapshots.values()]) {
      if (old.forNode === forNode) this.dropSnapshot(old, new FlotillaError(ErrorCode.NOT_FOUND, `snapshot ${old.id} replaced by a newer one for ${forNode}`));
    }
    const id = randomUUID();
    const started = clock.monotonic();
    log.info('snapshot started', { for: forNode, id, lsn: store.lastLsn });
    const s: ServedSnapshot = {
      id,
      forNode,
      file: path.join(dir, `${id}.sqlite`),
      handle: null,
      chunkBytes: config.snapshotChunkBytes,
      lsn: 0,
      epoch: 0,
      settledBytes: 0,
      bytes: null,
      hashes: null,
      waiters: new Set(),
      lastUseMono: started,
      abort: new AbortController(),
      dropped: false,
    };
    this.snapshots.set(id, s);
    let opened!: () => void;
    const readable = new Promise<void>((r) => (opened = r));
    const made = store.snapshotTo(s.file, {
      chunkBytes: s.chunkBytes,
      signal: s.abort.signal,
      listener: {
        onStarted: (lsn, epoch) => {
          s.lsn = lsn;
          s.epoch = epoch;
          void fs.promises.open(s.file, 'r').then(
            (h) => {
              if (s.dropped) void h.close();
              else s.handle = h;
              opened();
            },
            () => opened(),
          );
        },
        onProgress: (bytes) => {
          s.settledBytes = bytes;
          this.wakeSnapshotWaiters(s);
        },
        onComplete: (bytes) => {
          s.bytes = bytes;
          s.settledBytes = bytes;
          log.info('snapshot complete', { for: forNode, id, lsn: s.lsn, bytes, ms: Math.round(clock.monotonic() - started) });
          this.wakeSnapshotWaiters(s);
        },
      },
    });
    this.snapshotInProgress = made;
    const done = made.then(
      (snap) => {
        s.hashes = snap.chunkHashes;
        log.info('snapshot ready', { for: forNode, id, lsn: snap.lsn, bytes: snap.bytes, ms: Math.round(clock.monotonic() - started) });
        this.wakeSnapshotWaiters(s);
      },
      (err: Error) => {
        if (!s.dropped) log.error('snapshot failed', { for: forNode, id, err: err.message });
        this.dropSnapshot(s, new FlotillaError(ErrorCode.UNAVAILABLE, `snapshot ${id} failed: ${err.message}; begin a new one`));
        throw err;
      },
    );
    void done.catch(() => undefined).finally(() => {
      if (this.snapshotInProgress === made) this.snapshotInProgress = null;
    });
    await Promise.race([readable, done]);
    await readable; // a small snapshot can be done before its file is open here
    if (!s.handle) {
      const err = new FlotillaError(ErrorCode.UNAVAILABLE, `snapshot ${id} could not be opened; begin a new one`);
      this.dropSnapshot(s, err);
      throw err;
    }
    return { type: 'snapshot-started', v: PROTOCOL_VERSION, id, lsn: String(s.lsn), epoch: s.epoch, chunkBytes: s.chunkBytes };
  }

  /** Answers a chunk or hashes request now if it can be, else holds it until it can (or for SNAPSHOT_HOLD_MS). */
  private answerSnapshot(s: ServedSnapshot, w: Omit<SnapshotWaiter, 'timer'>): void {
    if (this.trySnapshotAnswer(s, w)) return;
    const waiter: SnapshotWaiter = {
      ...w,
      timer: this.ctx.clock.setTimeout(() => {
        if (s.waiters.delete(waiter)) w.respond(encode({ type: 'snapshot-wait', v: PROTOCOL_VERSION } satisfies SnapshotWait));
      }, SNAPSHOT_HOLD_MS),
    };
    s.waiters.add(waiter);
  }

  private wakeSnapshotWaiters(s: ServedSnapshot): void {
    for (const w of s.waiters) {
      if (this.trySnapshotAnswer(s, w)) {
        w.timer.cancel();
        s.waiters.delete(w);
      }
    }
  }

  /** Sends what `w` asks for if it is available; false when it is not yet. */
  private trySnapshotAnswer(s: ServedSnapshot, w: Omit<SnapshotWaiter, 'timer'>): boolean {
    const chunks = s.bytes === null ? null : Math.ceil(s.bytes / s.chunkBytes);
    if (w.kind === 'hashes') {
      if (!s.hashes || chunks === null) return false;
      if (w.n >= chunks) {
        this.answerSnapshotError(new FlotillaError(ErrorCode.BAD_REQUEST, `hashes from chunk ${w.n}: the snapshot has ${chunks} chunks`), w.respond);
        return true;
      }
      const count = Math.min(SNAPSHOT_HASHES_PER_REPLY, chunks - w.n);
      const frame = allocSnapshotFrame(SnapshotFrame.HASHES, w.n, 32 * count);
      s.hashes.copy(frame, SNAPSHOT_FRAME_HEADER_BYTES, 32 * w.n, 32 * (w.n + count));
      w.respond(frame);
      return true;
    }
    if (chunks !== null && w.n >= chunks) {
      const info: SnapshotInfo = { type: 'snapshot-info', v: PROTOCOL_VERSION, id: s.id, lsn: String(s.lsn), epoch: s.epoch, bytes: s.bytes!, chunkBytes: s.chunkBytes, chunks };
      w.respond(encode(info));
      return true;
    }
    const start = w.n * s.chunkBytes;
    const size = s.bytes === null ? s.chunkBytes : Math.min(s.chunkBytes, s.bytes - start);
    if (start + size > s.settledBytes || !s.handle) return false;
    // Read off the event loop, straight into the reply frame.
    const frame = allocSnapshotFrame(SnapshotFrame.CHUNK, w.n, size);
    s.handle
      .read(frame, SNAPSHOT_FRAME_HEADER_BYTES, size, start)
      .then(({ bytesRead }) => {
        if (bytesRead !== size) throw new Error(`read ${bytesRead} of ${size} bytes at ${start}`);
        w.respond(frame);
      })
      .catch((err: Error) => this.answerSnapshotError(new FlotillaError(ErrorCode.UNAVAILABLE, `snapshot ${s.id} chunk ${w.n}: ${err.message}`), w.respond));
    return true;
  }

  private expireSnapshots(): void {
    const now = this.ctx.clock.monotonic();
    for (const s of this.snapshots.values()) if (now - s.lastUseMono > SNAPSHOT_IDLE_MS) this.dropSnapshot(s);
  }

  /** Stops making `s` if it still is, answers its held requests with `why`, deletes its file. */
  private dropSnapshot(s: ServedSnapshot, why = new FlotillaError(ErrorCode.NOT_FOUND, `snapshot ${s.id} was dropped; begin a new one`)): void {
    if (s.dropped) return;
    s.dropped = true;
    this.snapshots.delete(s.id);
    s.abort.abort();
    for (const w of s.waiters) {
      w.timer.cancel();
      w.respond(encode(errorReply(why.toWire())));
    }
    s.waiters.clear();
    // Closing waits for reads in flight. The file is freed a step at a time: unlinked at once, its
    // hundreds of MB would stall this leader's own commit fsyncs (see removeFilePaced).
    const handle = s.handle;
    s.handle = null;
    void (handle ? handle.close() : Promise.resolve())
      .catch(() => undefined)
      .then(() => removeInBackground(this.ctx, s.file, `snapshot ${s.id}`));
  }

  private refuse(channel: string, err: unknown): void {
    this.ctx.counters.inc('refused');
    this.ctx.log.warn('refused message', { channel, reason: (err as Error).message });
  }
}

export function toWire(e: LogEntry): WireEntry {
  return { lsn: String(e.lsn), epoch: e.epoch, ts: e.ts, crc: e.crc, payload: e.payload };
}
