/**
 * One database node. Plays the leader or the follower role as the lease says, changing role
 * in-process; answers reads and control requests in any role; heartbeats; trims its log.
 * Every role transition is one log line: "role change" {from, to, epoch, leader, lsn}.
 */
import {
  ChecksumsReply,
  ClusterSettings,
  decodeEnvelope,
  DiscardedReply,
  SwitchoverReply,
  decodeHeartbeat,
  encode,
  ErrorCode,
  errorReply,
  FlotillaError,
  Heartbeat,
  parseLsn,
  PROTOCOL_VERSION,
  QueryReply,
  QueryRequest,
  Role,
  StatusReply,
} from '@flotilla/protocol';
import { chooseCandidate, type LeadershipView } from '@flotilla/election';
import type { Subscription } from '@flotilla/transport';
import type { Timer } from '@flotilla/logging';
import type { Store } from '@flotilla/storage';
import { IDEMPOTENCY_KEY_RETENTION_MS, isTurnSpent, SQL_TURN_TICK_MS } from '@flotilla/storage';
import { RoleContext } from './context';
import { FollowerRole } from './follower';
import { LeaderRole } from './leader';
import { ClusterView, MISSED_HEARTBEATS_STALE } from './cluster-view';
import { retentionPoint } from './retention';
import { SyncSettings, SyncTracker } from './sync-tracker';
import { validateQueryRequest } from './validate';

/** How long a switchover waits for the target to catch up. */
export const SWITCHOVER_TIMEOUT_MS = 10_000;
/**
 * How long a mode change waits for a synchronous follower to flush its entry before the answer
 * says "in force, not confirmed" (under the gateway's 5 s for the whole request).
 */
export const MODE_CONFIRM_MS = 4000;
/** How often the log is trimmed. */
export const RETENTION_INTERVAL_MS = 500;
/**
 * A query for the leader alone (`requireLeader`) that found its turn's SQL time taken by other
 * requests runs again a turn later, for at most this long from its first try; then it is answered
 * 503. Other queries get the 503 at once: the gateway asks another replica.
 */
export const QUERY_DEFER_MAX_MS = 1000;

/** Another node's applied LSN as last heard, and when (this process's monotonic clock). */
interface HeardPosition {
  applied: number;
  heardMono: number;
}
/** Other nodes' positions are written to the store at most this often (when they changed). */
export const POSITIONS_SAVE_INTERVAL_MS = 5000;
/** Oldest entries looked at per trim round. */
export const RETENTION_WINDOW_ENTRIES = 20_000;
/** Most entries dropped per retention round (every RETENTION_INTERVAL_MS: 10,000 per second). */
export const RETENTION_ROUND_ENTRIES_MAX = 5_000;

/** The oldest log entries, read a page at a time as far as the retention decision looks. */
function* oldestPaged(store: Store, max: number): Generator<{ lsn: number; ts: number; bytes: number }> {
  let after = 0;
  let n = 0;
  while (n < max) {
    const page = store.oldestEntries(Math.min(256, max - n), after);
    if (page.length === 0) return;
    for (const e of page) yield e;
    n += page.length;
    after = page[page.length - 1].lsn;
  }
}

export interface LeaseView {
  isValidLeader(): boolean;
  validForMs(): number;
  readonly leadership: LeadershipView;
  /** Hands the lease to `to` (switchover); this node then follows. */
  handOver(to: string): Promise<LeadershipView>;
  /** A leader of a newer epoch was seen: stop leading now. */
  yieldTo(leader: string, epoch: number): void;
}

interface ReadWaiter {
  lsn: number;
  resolve: (ok: boolean) => void;
  timer: Timer;
}

export class ReplicaNode {
  private role: Role = Role.STARTING;
  private epoch = 0;
  private leaderName: string | null = null;
  private leader: LeaderRole | null = null;
  private follower: FollowerRole | null = null;
  private subs: Subscription[] = [];
  private timers: Timer[] = [];
  private waiters: ReadWaiter[] = [];
  /** Reads put off to a later turn (see QUERY_DEFER_MAX_MS): answered UNAVAILABLE if the node stops first. */
  private readonly deferredReads = new Set<{ timer: Timer; respond: (d: Uint8Array) => void }>();
  private stopped = false;
  /**
   * Other nodes' last known applied LSN, for retention: from their heartbeats (so a follower that
   * becomes leader knows them), from acks while leading, and from the store at start (so a restart
   * does not forget them). A node not heard from for longer than the log's age limit is dropped:
   * by then the hard limit has dropped what it needed anyway.
   */
  private readonly followerApplied = new Map<string, HeardPosition>();
  private positionsChanged = false;
  /** Every node heard, as the gateway sees them (for `{replicas: n}`: see knownReplicas). */
  private readonly heard: ClusterView;
  private positionsSavedMono = Number.NEGATIVE_INFINITY;
  private readonly baseLog: RoleContext['log'];
  /** What the leader's heartbeat says of the sync set and mode (followers report `sync` from it). */
  private leaderSyncSet: string[] = [];
  private leaderMode: string | null = null;

  constructor(
    private readonly ctx: RoleContext,
    private readonly lease: LeaseView,
    private readonly version: string,
  ) {
    this.baseLog = ctx.log;
    this.heard = new ClusterView({ clock: ctx.clock, staleAfterMs: MISSED_HEARTBEATS_STALE * ctx.config.heartbeatIntervalMs });
  }

  start(): void {
    const { transport, subjects, node, config, clock } = this.ctx;
    this.epoch = this.ctx.store.knownEpoch();
    // Saved with wall-clock times; kept in memory on the monotonic clock (a clock step moves nothing).
    const nowWall = clock.now();
    const nowMono = clock.monotonic();
    for (const [n, p] of Object.entries(this.ctx.store.readKnownPositions())) {
      if (n !== node) this.followerApplied.set(n, { applied: p.applied, heardMono: nowMono - Math.max(0, nowWall - p.heardMs) });
    }
    this.subs.push(transport.subscribe(subjects.read(node), (m) => void this.onRead(m.data, m.respond)));
    this.subs.push(transport.subscribe(subjects.control(node), (m) => this.onControl(m.data, m.respond)));
    this.subs.push(transport.subscribe(subjects.heartbeatAll, (m) => this.onHeartbeat(m.data)));
    this.timers.push(clock.setInterval(() => this.heartbeat(), config.heartbeatIntervalMs));
    this.timers.push(clock.setInterval(() => this.trimLog(), RETENTION_INTERVAL_MS));
    this.ctx.log.info('replica started', { lsn: this.ctx.store.lastLsn, epoch: this.epoch });
  }

  /** Called by the lease keeper with each new leadership view. */
  onLeadership(view: LeadershipView): void {
    const from = this.role;
    const { store } = this.ctx;
    if (view.isLeader && this.leader && this.leader.epoch === view.epoch) return;
    // Every line from here on (the roles' own, made below) carries the new role and epoch.
    const to = view.isLeader ? Role.LEADER : Role.FOLLOWER;
    const epoch = view.isLeader ? view.epoch : Math.max(this.epoch, view.epoch);
    this.ctx.log = this.baseLog.child({ role: to, epoch });
    const log = this.ctx.log;
    if (view.isLeader) {
      this.follower?.stop();
      this.follower = null;
      this.leader?.stop();
      // Commits are flushed by the leader role, off the event loop (WalFlusher, see LeaderRole.onLocalFlushed).
      store.setDurability('deferred');
      store.startCapture();
      store.beginEpoch(view.epoch);
      // Everything applied as a follower, and the new epoch, are durable before the first write.
      store.syncWal();
      this.epoch = view.epoch;
      this.leaderName = this.ctx.node;
      this.leader = new LeaderRole(
        this.ctx,
        view.epoch,
        () => this.lease.isValidLeader(),
        new SyncTracker(this.effectiveSettings(), this.ctx.log.child({ component: 'sync' }), () => this.heartbeat()),
        () => this.knownReplicas(),
      );
      this.leader.start();
      this.role = Role.LEADER;
    } else {
      this.leader?.stop();
      this.leader = null;
      if (store.capturing) store.stopCapture();
      this.epoch = Math.max(this.epoch, view.epoch);
      this.leaderName = view.leader;
      if (this.follower) this.follower.repoint(view.leader ?? '', view.epoch);
      else {
        this.follower = new FollowerRole(
          this.ctx,
          view.epoch,
          view.leader ?? '',
          () => this.wakeReaders(),
          // Flush at once unless the leader says it runs async and we are not in its sync set.
          () => this.leaderMode !== 'async' || this.leaderSyncSet.includes(this.ctx.node),
        );
        this.follower.start();
      }
      this.role = Role.FOLLOWER;
    }
    log.info('role change', { from, to: this.role, leader: this.leaderName, lsn: store.lastLsn });
    this.heartbeat();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) t.cancel();
    for (const d of this.deferredReads) {
      d.timer.cancel();
      this.answer(d.respond, encode(errorReply({ code: ErrorCode.UNAVAILABLE, message: `${this.ctx.node} is stopping; retry` })));
    }
    this.deferredReads.clear();
    if (this.follower?.state !== 'seeding') this.savePositions();
    for (const s of this.subs) s.unsubscribe();
    this.leader?.stop();
    this.follower?.stop();
    for (const w of this.waiters) {
      w.timer.cancel();
      w.resolve(false);
    }
    this.waiters = [];
  }

  // ---- status ---------------------------------------------------------------------------------

  /**
   * Runs a write request on this node when it leads (the same path as the `write` subject, without
   * the NATS hop); null when it does not lead, so the caller sends it to the leader instead.
   */
  localWrite(data: Uint8Array): Promise<Uint8Array> | null {
    return this.role === Role.LEADER && this.leader ? this.leader.submitWrite(data) : null;
  }

  /** Ready to serve reads: leading with a valid lease, or following the live stream. */
  isReady(): boolean {
    if (this.role === Role.LEADER) return this.lease.isValidLeader();
    return this.follower?.state === 'live';
  }

  get currentRole(): Role {
    if (this.follower?.state === 'seeding') return Role.SEEDING;
    return this.role;
  }

  heartbeatMessage(): Heartbeat {
    const { store, config, node, clock } = this.ctx;
    const lsn = String(store.lastLsn);
    const hb: Heartbeat = {
      type: 'hb',
      v: PROTOCOL_VERSION,
      node,
      role: this.currentRole,
      epoch: this.epoch,
      leader: this.leaderName,
      lsn,
      appliedLsn: lsn,
      flushedLsn: this.follower ? String(this.follower.flushedLsn) : this.leader ? String(this.leader.flushedLsn) : lsn,
      lastEpoch: store.lastEntryEpoch,
      lagMs: this.follower ? this.follower.lagMs() : 0,
      sync: this.follower ? this.leaderSyncSet.includes(node) : false,
      mode: this.leader ? this.leader.sync.mode : this.leaderMode ?? this.effectiveSettings().mode,
      logFormat: 'logical',
      version: this.version,
      ts: clock.now(),
    };
    if (config.httpPort) hb.httpUrl = `http://${config.httpHost}:${config.httpPort}`;
    if (this.follower && !this.follower.logChecked && hb.role === Role.FOLLOWER) hb.problem = `log not yet checked against leader ${this.follower.leader}: reads refused`;
    if (this.role === Role.LEADER) {
      hb.leaseValid = this.lease.isValidLeader();
      if (!hb.leaseValid) hb.problem = 'lease not valid: writes refused';
    }
    if (this.leader) {
      const st = this.leader.sync.current;
      hb.syncSet = [...this.leader.sync.members];
      hb.degraded = this.leader.sync.degraded;
      hb.syncFollowers = st.syncFollowers;
      hb.syncPolicy = st.syncPolicy;
      if (hb.degraded) hb.problem = `${st.mode} degraded to async: no synchronous follower`;
    }
    return hb;
  }

  private heartbeat(): void {
    this.ctx.transport.publish(this.ctx.subjects.heartbeat(this.ctx.node), encode(this.heartbeatMessage()));
    // Followers re-send their position with every heartbeat, so a new leader learns it at once.
    this.follower?.sendAck();
  }

  private onHeartbeat(data: Uint8Array): void {
    try {
      const hb = decodeHeartbeat(data);
      this.heard.ingest(hb);
      if (hb.node === this.ctx.node) return;
      const heardMono = this.ctx.clock.monotonic();
      if (hb.role === Role.FOLLOWER) this.notePosition(hb.node, parseLsn(hb.appliedLsn), heardMono);
      // A leader needs no entries from anyone, and a seeding node's old position means nothing
      // (its snapshot's LSN is pinned while it is served): neither holds the log back.
      else if (hb.role === Role.LEADER || hb.role === Role.SEEDING) this.forgetPosition(hb.node);
      if (hb.role !== Role.LEADER) return;
      if (this.leader && hb.epoch > this.epoch) {
        // Two leaders: the older epoch steps down at once.
        this.lease.yieldTo(hb.node, hb.epoch);
        return;
      }
      if (this.follower && hb.node === this.follower.leader && hb.epoch >= this.follower.epoch) {
        // A leader that says its lease is not valid may be deposed already: what it claims of its
        // log proves nothing about freshness (and its last LSN may no longer be the cluster's).
        if (hb.leaseValid !== false) this.follower.noteLeaderLsn(parseLsn(hb.lsn), hb.ts);
        this.leaderSyncSet = hb.syncSet ?? [];
        this.leaderMode = hb.mode;
      }
    } catch {
      /* a malformed heartbeat is not ours to judge here; the monitor and gateway log them */
    }
  }

  /** Settings set at run time (replicated in the log) win over the start-up configuration. */
  effectiveSettings(): SyncSettings {
    const stored = this.ctx.store.readSettings();
    const c = this.ctx.config;
    return stored ?? { mode: c.mode, syncFollowers: c.syncFollowers, syncPolicy: c.syncPolicy, syncTimeoutMs: c.syncTimeoutMs };
  }

  counters(): Record<string, number> {
    return { ...this.ctx.counters.values };
  }

  // ---- reads ----------------------------------------------------------------------------------

  private async onRead(data: Uint8Array, respond?: (d: Uint8Array) => void, firstTryMono?: number): Promise<void> {
    if (!respond) return;
    let req: QueryRequest | undefined;
    try {
      if (this.stopped) throw new FlotillaError(ErrorCode.UNAVAILABLE, `${this.ctx.node} is stopping`);
      req = validateQueryRequest(decodeEnvelope(data));
      if (req.requireLeader && !(this.role === Role.LEADER && this.lease.isValidLeader())) {
        throw new FlotillaError(ErrorCode.NOT_LEADER, `${this.ctx.node} is not a leader with a valid lease`, { leaderHint: this.leaderName ?? undefined });
      }
      if (this.currentRole === Role.SEEDING || this.currentRole === Role.STARTING) {
        throw new FlotillaError(ErrorCode.UNAVAILABLE, `${this.ctx.node} is ${this.currentRole} and cannot serve reads yet`);
      }
      if (this.follower && !this.follower.logChecked) {
        throw new FlotillaError(ErrorCode.UNAVAILABLE, `${this.ctx.node} has not yet checked its log against leader ${this.follower.leader}: its last transactions may be ones the leader never had`);
      }
      if (req.maxLagMs !== undefined && this.follower) {
        // Proven freshness, not time since the leader was last heard from (see FreshnessTracker).
        const staleMs = this.follower.stalenessMs();
        if (staleMs > req.maxLagMs) {
          const known = Number.isFinite(staleMs) ? `is known to be current only as of ${Math.round(staleMs)} ms ago` : 'has no proof yet of how current it is';
          throw new FlotillaError(ErrorCode.TIMEOUT, `${this.ctx.node} ${known}, more than maxLagMs ${req.maxLagMs}`);
        }
      }
      if (req.maxLagMs !== undefined && this.role === Role.LEADER && !this.lease.isValidLeader()) {
        // Current only while nobody else can be writing: once its lease may have lapsed, another
        // node may lead and acknowledge writes this one never sees.
        throw new FlotillaError(ErrorCode.TIMEOUT, `${this.ctx.node} leads without a valid lease, so it cannot prove it is current; retry shortly`);
      }
      if (req.minLsn !== undefined) {
        const min = parseLsn(req.minLsn, 'minLsn');
        // Counted, so a test (or an operator) can tell reads that had to wait for their LSN here.
        if (this.ctx.store.lastLsn < min) this.ctx.counters.inc('readsWaitedForLsn');
        if (this.ctx.store.lastLsn < min && !(await this.waitApplied(min, req.waitMs ?? 0))) {
          if (this.role === Role.LEADER) {
            // Nothing newer exists anywhere: the state read at minLsn was lost (an async failover).
            throw new FlotillaError(ErrorCode.TIMEOUT, `leader ${this.ctx.node}'s log ends at LSN ${this.ctx.store.lastLsn}, before minLsn ${min}: what was read at ${min} is not in this cluster's history (lost in a failover?)`);
          }
          throw new FlotillaError(ErrorCode.TIMEOUT, `${this.ctx.node} has not applied LSN ${min} yet (at ${this.ctx.store.lastLsn})`);
        }
        // (epoch, LSN) names one transaction: another epoch at that LSN is another history. A newer
        // one here, or any other on the leader (with a valid lease), means the write was lost; an
        // older one elsewhere means this node is still on a deposed leader's branch: ask the leader.
        if (req.minEpoch !== undefined && min > 0) {
          const epoch = this.ctx.store.epochAt(min);
          if (epoch < req.minEpoch && !(this.role === Role.LEADER && this.lease.isValidLeader())) {
            throw new FlotillaError(ErrorCode.TIMEOUT, `${this.ctx.node} holds LSN ${min} of epoch ${epoch}, older than epoch ${req.minEpoch}: it has not caught up with that history yet`);
          }
          if (epoch !== req.minEpoch) {
            throw new FlotillaError(
              ErrorCode.STALE_EPOCH,
              `the write at LSN ${min} of epoch ${req.minEpoch} is not in this cluster's history (LSN ${min} here is of epoch ${epoch}): it was lost in a failover, and no read can show it`,
            );
          }
        }
      }
      const r = this.ctx.store.query(req.sql, req.params);
      const reply: QueryReply = { type: 'query-reply', v: PROTOCOL_VERSION, rows: r.rows, lsn: String(r.lsn), servedBy: this.ctx.node };
      const bytes = encode(reply);
      if (bytes.length > 1024 * 1024 - 1024) throw new FlotillaError(ErrorCode.PAYLOAD_TOO_LARGE, 'the result is larger than 1 MiB; add a LIMIT');
      this.answer(respond, bytes);
    } catch (err) {
      const { clock } = this.ctx;
      const first = firstTryMono ?? clock.monotonic();
      if (isTurnSpent(err) && req?.requireLeader && !this.stopped && clock.monotonic() - first < QUERY_DEFER_MAX_MS) {
        // Other requests' SQL took this turn's time (statementTimeoutMs): not this query's fault,
        // and no other node may answer it. It runs in a later turn, every check again, as a write does.
        const timer = clock.setTimeout(() => {
          this.deferredReads.delete(deferred);
          void this.onRead(data, respond, first);
        }, SQL_TURN_TICK_MS);
        const deferred = { timer, respond };
        this.deferredReads.add(deferred);
        return;
      }
      const wire = err instanceof FlotillaError ? err.toWire() : { code: ErrorCode.BAD_REQUEST, message: (err as Error).message };
      this.answer(respond, encode(errorReply(wire)));
    }
  }

  /** Sends a read's answer; one that cannot be sent (the connection is closing) is dropped, not thrown. */
  private answer(respond: (d: Uint8Array) => void, bytes: Uint8Array): void {
    try {
      respond(bytes);
    } catch (err) {
      this.ctx.log.warn('read answer not sent', { err: (err as Error).message });
    }
  }

  private waitApplied(lsn: number, waitMs: number): Promise<boolean> {
    if (waitMs <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const w: ReadWaiter = {
        lsn,
        resolve,
        timer: this.ctx.clock.setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          resolve(false);
        }, waitMs),
      };
      this.waiters.push(w);
    });
  }

  private wakeReaders(): void {
    if (this.waiters.length === 0) return;
    const applied = this.ctx.store.lastLsn;
    this.waiters = this.waiters.filter((w) => {
      if (w.lsn > applied) return true;
      w.timer.cancel();
      w.resolve(true);
      return false;
    });
  }

  // ---- control --------------------------------------------------------------------------------

  private onControl(data: Uint8Array, respond?: (d: Uint8Array) => void): void {
    if (!respond) return;
    try {
      const m = decodeEnvelope(data);
      if (m.type === 'status') {
        const reply: StatusReply = { type: 'status-reply', v: PROTOCOL_VERSION, heartbeat: this.heartbeatMessage(),
          counters: this.counters(),
          log: { oldestLsn: String(this.ctx.store.oldestLsn()), lastLsn: String(this.ctx.store.lastLsn), bytes: this.ctx.store.logSizeBytes },
        };
        respond(encode(reply));
      } else if (m.type === 'checksums') {
        const reply: ChecksumsReply = { type: 'checksums-reply', v: PROTOCOL_VERSION, appliedLsn: String(this.ctx.store.lastLsn), tables: this.ctx.store.tableChecksums() };
        respond(encode(reply));
      } else if (m.type === 'discarded') {
        const reply: DiscardedReply = { type: 'discarded-reply', v: PROTOCOL_VERSION, node: this.ctx.node, transactions: this.ctx.store.quarantine.list(this.ctx.node) };
        respond(encode(reply));
      } else if (m.type === 'set-mode') {
        void this.setMode(m).then(
          (r) => respond(encode(r)),
          (err) => {
            const bad = err instanceof FlotillaError && err.code === ErrorCode.BAD_REQUEST;
            this.ctx.log.warn(bad ? 'refused message' : 'mode change not confirmed', { channel: 'control', reason: (err as Error).message });
            respond(encode(errorReply(err instanceof FlotillaError ? err.toWire() : { code: ErrorCode.UNAVAILABLE, message: (err as Error).message })));
          },
        );
      } else if (m.type === 'switchover') {
        void this.switchover(String(m.to), typeof m.timeoutMs === 'number' ? m.timeoutMs : SWITCHOVER_TIMEOUT_MS).then(
          (r) => respond(encode(r)),
          (err) => respond(encode(errorReply(err instanceof FlotillaError ? err.toWire() : { code: ErrorCode.UNAVAILABLE, message: (err as Error).message }))),
        );
      } else if (m.type === 'step-down') {
        if (typeof m.epoch !== 'number' || typeof m.leader !== 'string') throw new FlotillaError(ErrorCode.BAD_REQUEST, 'step-down needs epoch and leader');
        if (this.leader && m.epoch > this.epoch) this.lease.yieldTo(m.leader, m.epoch);
        respond(encode({ type: 'ok', v: PROTOCOL_VERSION }));
      } else {
        throw new FlotillaError(ErrorCode.BAD_REQUEST, `unknown control request ${m.type}`);
      }
    } catch (err) {
      this.ctx.log.warn('refused message', { channel: 'control', reason: (err as Error).message });
      const wire = err instanceof FlotillaError ? err.toWire() : { code: ErrorCode.BAD_REQUEST, message: (err as Error).message };
      respond(encode(errorReply(wire)));
    }
  }

  private async setMode(m: Record<string, unknown>): Promise<{ type: 'ok'; v: typeof PROTOCOL_VERSION; settings: ClusterSettings; lsn: string }> {
    const leader = this.leader;
    if (!leader) throw new FlotillaError(ErrorCode.NOT_LEADER, `${this.ctx.node} is not the leader`, { leaderHint: this.leaderName ?? undefined });
    const cur = leader.sync.current;
    const next: ClusterSettings = {
      mode: (m.mode ?? cur.mode) as ClusterSettings['mode'],
      syncFollowers: (m.syncFollowers ?? cur.syncFollowers) as number,
      syncPolicy: (m.syncPolicy ?? cur.syncPolicy) as ClusterSettings['syncPolicy'],
      syncTimeoutMs: (m.syncTimeoutMs ?? cur.syncTimeoutMs) as number,
    };
    if (!['async', 'semi-sync', 'sync'].includes(next.mode)) throw new FlotillaError(ErrorCode.BAD_REQUEST, 'mode must be async, semi-sync or sync');
    if (!Number.isInteger(next.syncFollowers) || next.syncFollowers < 1 || next.syncFollowers > 64) throw new FlotillaError(ErrorCode.BAD_REQUEST, 'syncFollowers must be 1..64');
    if (!['block', 'degrade'].includes(next.syncPolicy)) throw new FlotillaError(ErrorCode.BAD_REQUEST, 'syncPolicy must be block or degrade');
    if (!Number.isInteger(next.syncTimeoutMs) || next.syncTimeoutMs < 10 || next.syncTimeoutMs > 600_000) throw new FlotillaError(ErrorCode.BAD_REQUEST, 'syncTimeoutMs must be 10..600000');
    // An idle follower acks only with its heartbeat: a shorter timeout calls it gone between two.
    if (next.syncTimeoutMs >= this.ctx.config.requestTimeoutMs) {
      throw new FlotillaError(ErrorCode.BAD_REQUEST, `syncTimeoutMs must be below requestTimeoutMs (${this.ctx.config.requestTimeoutMs}): otherwise the gateway gives up before the policy answers`);
    }
    if (next.syncTimeoutMs < 2 * this.ctx.config.heartbeatIntervalMs) {
      throw new FlotillaError(ErrorCode.BAD_REQUEST, `syncTimeoutMs must be at least twice heartbeatIntervalMs (${2 * this.ctx.config.heartbeatIntervalMs}): idle followers ack once per heartbeat`);
    }
    const entry = leader.setSettings(next);
    this.heartbeat();
    await leader.settingsDurable(entry.lsn, MODE_CONFIRM_MS);
    return { type: 'ok', v: PROTOCOL_VERSION, settings: next, lsn: String(entry.lsn) };
  }

  /**
   * A leader asked to shut down hands the lease to its most up-to-date follower (as a failover
   * would choose it) by a switchover, so nothing acknowledged is lost and no follower races for a released
   * lease. Resolves with the follower's name, or null when this node does not lead, no follower
   * was heard from within `syncTimeoutMs`, or the switchover failed (the caller then releases).
   */
  async handOffForShutdown(timeoutMs: number): Promise<string | null> {
    const leader = this.leader;
    if (!leader) return null;
    // The failover rule (chooseCandidate) over the positions this leader has from acks; no lag
    // bound: the switchover's drain waits until the chosen one has everything.
    const now = this.ctx.clock.monotonic();
    const heardWithinMs = Math.max(this.ctx.config.syncTimeoutMs, 2 * this.ctx.config.heartbeatIntervalMs);
    const sync = new Set(leader.sync.members);
    const nodes = [...leader.followers.values()].map((f) => ({
      name: f.node,
      role: 'follower',
      epoch: this.epoch,
      flushedLsn: String(f.flushed),
      sync: sync.has(f.node),
      healthy: now - f.seenAtMono < heardWithinMs,
    }));
    const choice = chooseCandidate(nodes, { lastLeaderLsn: '0', maxLagOnFailover: Number.MAX_SAFE_INTEGER });
    if (!choice.candidate) {
      this.ctx.log.warn('shutting down as leader with no follower to hand over to: releasing the lease', { reason: choice.reason });
      return null;
    }
    const to = choice.candidate.name;
    try {
      await this.switchover(to, timeoutMs);
      return to;
    } catch (err) {
      this.ctx.log.warn('hand-over at shutdown failed: releasing the lease', { to, err: (err as Error).message });
      return null;
    }
  }

  /** Planned switchover: no write is lost, none is acknowledged twice. */
  private async switchover(to: string, timeoutMs: number): Promise<SwitchoverReply> {
    const leader = this.leader;
    if (!leader) throw new FlotillaError(ErrorCode.NOT_LEADER, `${this.ctx.node} is not the leader`, { leaderHint: this.leaderName ?? undefined });
    if (to === this.ctx.node) throw new FlotillaError(ErrorCode.BAD_REQUEST, `${to} already leads`);
    this.ctx.log.info('switchover started', { to, lsn: this.ctx.store.lastLsn });
    const lsn = await leader.drainFor(to, timeoutMs);
    let view: LeadershipView;
    try {
      view = await this.lease.handOver(to);
    } catch (err) {
      leader.resumeWrites();
      throw new FlotillaError(ErrorCode.CONFLICT, `switchover to ${to} failed: ${(err as Error).message}; writes resumed`);
    }
    this.ctx.log.info('switchover finished', { to, epoch: view.epoch, lsn });
    return { type: 'switchover-reply', v: PROTOCOL_VERSION, from: this.ctx.node, to, epoch: view.epoch, lsn: String(lsn) };
  }

  // ---- log retention --------------------------------------------------------------------------

  /**
   * The replicas this node knows, by the gateway's rule (ClusterView: every node heard in the last
   * five minutes, down ones included) and itself. Null until it has heard heartbeats long enough to
   * have heard every live node.
   */
  private knownReplicas(): string[] | null {
    if (!this.heard.hasHeardEveryLiveNode()) return null;
    const names = this.heard.nodes().map((n) => n.name);
    return names.includes(this.ctx.node) ? names : [...names, this.ctx.node].sort();
  }

  private notePosition(node: string, applied: number, heardMono: number): void {
    const known = this.followerApplied.get(node);
    if (known && (known.heardMono > heardMono || (known.heardMono === heardMono && known.applied === applied))) return;
    // A position this node's log no longer reaches is served by a snapshot whatever is kept.
    if (applied < this.ctx.store.oldestLsn() - 1) return this.forgetPosition(node);
    this.followerApplied.set(node, { applied, heardMono });
    this.positionsChanged = true;
  }

  private forgetPosition(node: string): void {
    if (this.followerApplied.delete(node)) this.positionsChanged = true;
  }

  /** Forgets nodes not heard from for longer than the log's age limit; saves the rest now and then. */
  private keepPositions(): void {
    const { config, clock, log } = this.ctx;
    const now = clock.monotonic();
    for (const [n, p] of this.followerApplied) {
      if (now - p.heardMono <= config.logRetentionMs) continue;
      this.followerApplied.delete(n);
      this.positionsChanged = true;
      log.info('follower position forgotten', { follower: n, applied: p.applied, silentForMs: Math.round(now - p.heardMono) });
    }
    if (clock.monotonic() - this.positionsSavedMono >= POSITIONS_SAVE_INTERVAL_MS) this.savePositions();
  }

  private savePositions(): void {
    const { store, clock, log } = this.ctx;
    if (!this.positionsChanged) return;
    try {
      const nowWall = clock.now();
      const nowMono = clock.monotonic();
      store.writeKnownPositions(Object.fromEntries([...this.followerApplied].map(([n, p]) => [n, { applied: p.applied, heardMs: Math.round(nowWall - (nowMono - p.heardMono)) }])));
      this.positionsChanged = false;
      this.positionsSavedMono = clock.monotonic();
    } catch (err) {
      log.warn('follower positions not saved', { err: (err as Error).message });
    }
  }

  private trimLog(): void {
    const { store, config, clock, log } = this.ctx;
    if (this.leader) {
      // Acks this term, skipping long-silent followers (the leader keeps them all; they would be
      // noted and forgotten again every round).
      const mono = clock.monotonic();
      for (const f of this.leader.followers.values()) if (mono - f.seenAtMono <= config.logRetentionMs) this.notePosition(f.node, f.applied, f.seenAtMono);
    }
    if (this.follower?.state === 'seeding') return;
    this.keepPositions();
    const through = retentionPoint(
      {
        lastLsn: store.lastLsn,
        logBytes: store.logSizeBytes,
        // A snapshot being served pins its LSN too: a seed slower than the log's soft retention
        // would otherwise find its position gone and be re-seeded, forever.
        // Followers keep what other nodes need as well: any of them may lead next, and a follower
        // that trimmed freely would lead without the entries a node that was down needs.
        followerApplied: [...[...this.followerApplied.values()].map((p) => p.applied), ...(this.leader?.servedSnapshotLsns ?? [])],
        oldest: oldestPaged(store, RETENTION_WINDOW_ENTRIES),
        nowMs: clock.now(),
      },
      { retainEntries: config.logRetentionEntries, maxBytes: config.logRetentionBytes, maxAgeMs: config.logRetentionMs },
    );
    if (through >= store.oldestLsn()) {
      // Small rounds, often: one DELETE of tens of thousands of entries stalls the event loop.
      const n = store.truncateLogThrough(through, RETENTION_ROUND_ENTRIES_MAX);
      if (n > 0) log.debug('log trimmed', { through, entries: n, oldest: store.oldestLsn() });
    }
    const keys = store.trimIdempotencyKeys(clock.now() - IDEMPOTENCY_KEY_RETENTION_MS, RETENTION_ROUND_ENTRIES_MAX);
    if (keys > 0) log.debug('idempotency keys forgotten', { keys, olderThanMs: IDEMPOTENCY_KEY_RETENTION_MS });
  }
}
