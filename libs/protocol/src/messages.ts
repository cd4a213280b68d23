/**
 * Every message Flotilla sends over NATS. One discriminated union per channel keyed by `type`,
 * each with a protocol version `v`. Messages are JSON; LSNs travel as decimal strings.
 * Decoders in codec.ts validate shape once at the boundary; nothing unvalidated reaches the core.
 */
import type { WireError } from './errors';

/** Version of every message below. A peer refuses a message whose `v` it does not know. */
export const PROTOCOL_VERSION = 1 as const;

/** A SQL value on the wire: JSON scalars, blobs as `{$b: base64}`, integers beyond 2^53 as `{$i: decimal}`. */
export type SqlValue = null | number | string | { $b: string } | { $i: string };

/** One SQL statement with positional (array) or named (object) parameters. */
export interface Statement {
  sql: string;
  params?: SqlValue[] | Record<string, SqlValue>;
}

/** Outcome of one statement of a write transaction. */
export interface ExecResult {
  changes: number;
  /** Decimal string: rowids are 64-bit. */
  lastInsertRowid: string;
}

/**
 * One row change captured on the leader. Tables with a rowid carry it in `rid`, so followers keep
 * identical rowids; `key` holds the primary key values (or `[rowid]` for a table without one).
 * `old` is the before-image kept for rewind after failover.
 */
export type Change =
  | { op: 'ddl'; sql: string }
  | { op: 'ins'; t: string; rid: string | null; row: SqlValue[] }
  | { op: 'del'; t: string; rid: string | null; key: SqlValue[]; old: SqlValue[] }
  | {
      op: 'upd';
      t: string;
      /** The row's rowid after the update (null: WITHOUT ROWID). */
      rid: string | null;
      /** Its rowid before (since 2026-11-28; older entries find the row by `key` alone). */
      orid?: string | null;
      key: SqlValue[];
      old: SqlValue[];
      row: SqlValue[];
    };

/** The body of one log entry: a committed write transaction in logical (row-based) form. */
export interface TxnPayload {
  /** Log format of this payload; only `logical` exists so far. */
  format: 'logical';
  changes: Change[];
  /** Column names of each table touched, in the order of `row`/`old` values. */
  cols: Record<string, string[]>;
  /** Idempotency key of the client request, replicated so a retry after failover is recognised. */
  idem?: string;
  /** With `idem`: digest of the request's statements, so a key reused for another request is refused. */
  idemReq?: string;
  /**
   * With `idem`: what the client was told (rows of RETURNING statements included), so a retry gets
   * the same answer on any leader. Write entries without `idem` carry none since 2026-11-28 (before,
   * only changes and lastInsertRowid, which nothing read); settings entries carry `[]`.
   */
  results?: ExecResult[];
  /** Cluster settings changed by this entry (replication mode), replicated like data. */
  settings?: ClusterSettings;
  /**
   * With `settings`: the settings in force before this entry (null: none set at run time), the
   * before-image a rewind restores. Absent in entries written before 2026-11-28 (a rewind then
   * clears the settings).
   */
  previousSettings?: ClusterSettings | null;
}

/** Settings that are cluster-wide and changed at run time: stored in every replica's database. */
export interface ClusterSettings {
  mode: 'async' | 'semi-sync' | 'sync';
  syncFollowers: number;
  syncPolicy: 'block' | 'degrade';
  syncTimeoutMs: number;
}

/** A log entry as it travels: `crc` is CRC-32 of the UTF-8 bytes of `payload`. */
export interface WireEntry {
  lsn: string;
  epoch: number;
  /** Leader wall-clock commit time, ms since the Unix epoch (for lag in ms). */
  ts: number;
  crc: number;
  payload: string;
}

/** Start LSN of each epoch: the first LSN written in that epoch (like a PostgreSQL timeline history). */
export interface EpochStart {
  epoch: number;
  startLsn: string;
}

// ---- log channel (leader → followers) -------------------------------------------------------

export interface LogBatch {
  type: 'entries';
  v: typeof PROTOCOL_VERSION;
  /** Epoch of the sending leader: the fencing token. */
  epoch: number;
  leader: string;
  entries: WireEntry[];
  /**
   * The leader's last LSN when it published this message, and its wall clock then (ms): a claim
   * that it had committed nothing above `lsn` at `ts`, which is what lets a follower prove how fresh
   * it is for bounded reads. Optional on the wire (a follower of an older leader goes by heartbeats).
   */
  lsn?: string;
  ts?: number;
}

// ---- ack channel (follower → leader) --------------------------------------------------------

export interface AckMessage {
  type: 'ack';
  v: typeof PROTOCOL_VERSION;
  node: string;
  epoch: number;
  received: string;
  flushed: string;
  applied: string;
  /** False while the follower catches up or seeds: it cannot be made synchronous yet. */
  live?: boolean;
}

// ---- heartbeats -----------------------------------------------------------------------------

export const Role = {
  LEADER: 'leader',
  FOLLOWER: 'follower',
  /** Started, not yet told its role by the lease. */
  STARTING: 'starting',
  /** A follower receiving a snapshot. */
  SEEDING: 'seeding',
} as const;
export type Role = (typeof Role)[keyof typeof Role];

export interface Heartbeat {
  type: 'hb';
  v: typeof PROTOCOL_VERSION;
  node: string;
  role: Role;
  epoch: number;
  /** Leader this node follows (itself when leading), if known. */
  leader: string | null;
  /** Last LSN in the node's log. */
  lsn: string;
  appliedLsn: string;
  flushedLsn: string;
  /** Epoch of the node's last log entry (compared before the LSN when choosing a new leader). */
  lastEpoch?: number;
  /** Replication lag in ms as this node sees it (0 for the leader). */
  lagMs: number;
  sync: boolean;
  mode: string;
  logFormat: string;
  version: string;
  /** Wall clock of the sender, ms. */
  ts: number;
  /** HTTP address of the node's own health/metrics server. */
  httpUrl?: string;
  /** Why the node cannot serve, if it cannot. */
  problem?: string;
  /** Leader only: false while it cannot renew its lease (it refuses writes; the monitor treats it as down). */
  leaseValid?: boolean;
  /** Leader only: the followers that are synchronous now. */
  syncSet?: string[];
  /** Leader only: true while semi-sync/sync runs degraded to async (policy `degrade`). */
  degraded?: boolean;
  /** Leader only: the sync settings in force. */
  syncFollowers?: number;
  syncPolicy?: string;
}

// ---- catch-up (request/reply to the leader) -------------------------------------------------

export interface CatchupRequest {
  type: 'catchup';
  v: typeof PROTOCOL_VERSION;
  node: string;
  epoch: number;
  /** Send entries with LSN strictly greater than this. */
  after: string;
  /** Epoch of the follower's entry at `after`: lets the leader see that the logs diverged. */
  lastEpoch?: number;
  /** Upper bound on the reply size in bytes. */
  maxBytes: number;
}

export interface CatchupReply {
  type: 'catchup-reply';
  v: typeof PROTOCOL_VERSION;
  epoch: number;
  leader: string;
  /** Last LSN of the leader's log when the reply was made. */
  leaderLsn: string;
  entries: WireEntry[];
  epochs: EpochStart[];
}

/**
 * The follower's log has entries after `truncateAfter` that the leader's does not (it led, or
 * followed a leader, in an epoch whose tail was never replicated): rewind to `truncateAfter`.
 */
export interface CatchupDiverged {
  type: 'catchup-diverged';
  v: typeof PROTOCOL_VERSION;
  epoch: number;
  leader: string;
  truncateAfter: string;
  epochs: EpochStart[];
}

// ---- snapshot (request/reply to the leader) -------------------------------------------------

/**
 * Seeding a follower. The leader streams its snapshot while still making it:
 *
 * 1. `snapshot-begin` → {@link SnapshotStarted} (id, exact LSN, chunk size) as soon as the
 *    snapshot's read transaction is open.
 * 2. `snapshot-chunk` for index 0, 1, … with several in flight → a chunk frame
 *    ({@link SnapshotFrame}), or {@link SnapshotWait} (not made that far yet: ask again), or, for an
 *    index past the last chunk once the file is complete, {@link SnapshotInfo} (its size).
 * 3. `snapshot-hashes` from 0 → hash frames: the SHA-256 of every chunk of the finished file, or
 *    {@link SnapshotWait} while the leader still computes them. A chunk fetched before it was final
 *    can differ from the finished file: it is fetched again. A follower installs the file only when
 *    the SHA-256 of every chunk it wrote equals the leader's.
 * 4. `snapshot-end`: the leader deletes its file.
 */
export type SnapshotRequest =
  | { type: 'snapshot-begin'; v: typeof PROTOCOL_VERSION; node: string }
  | { type: 'snapshot-chunk'; v: typeof PROTOCOL_VERSION; id: string; index: number }
  | { type: 'snapshot-hashes'; v: typeof PROTOCOL_VERSION; id: string; from: number }
  | { type: 'snapshot-end'; v: typeof PROTOCOL_VERSION; id: string };

export interface SnapshotStarted {
  type: 'snapshot-started';
  v: typeof PROTOCOL_VERSION;
  id: string;
  /** The exact LSN the snapshot contains: catch-up resumes after it. */
  lsn: string;
  epoch: number;
  /** Every chunk but the last has exactly this many bytes. */
  chunkBytes: number;
}

/** The file is complete: it has `bytes` bytes in `chunks` chunks. */
export interface SnapshotInfo {
  type: 'snapshot-info';
  v: typeof PROTOCOL_VERSION;
  id: string;
  lsn: string;
  epoch: number;
  bytes: number;
  chunkBytes: number;
  chunks: number;
}

/** Not available yet; ask again (the leader held the request a while before saying so). */
export interface SnapshotWait {
  type: 'snapshot-wait';
  v: typeof PROTOCOL_VERSION;
}

/**
 * Binary replies on the snapshot channel: 4 magic bytes, a big-endian uint32 (the chunk index, or
 * the first chunk whose hash follows), then the payload. Any other reply is a JSON envelope (it
 * starts with `{`).
 */
export const SnapshotFrame = {
  /** Payload: the bytes of one chunk. */
  CHUNK: 'FSC1',
  /** Payload: 32-byte SHA-256 digests of consecutive chunks. */
  HASHES: 'FSH1',
} as const;
export type SnapshotFrame = (typeof SnapshotFrame)[keyof typeof SnapshotFrame];
export const SNAPSHOT_FRAME_HEADER_BYTES = 8;

// ---- writes and reads -----------------------------------------------------------------------

/** Durability asked for by one write: never less than the cluster default. */
export type Durability = 'leader' | 'sync' | { replicas: number };

export interface WriteRequest {
  type: 'write';
  v: typeof PROTOCOL_VERSION;
  statements: Statement[];
  idempotencyKey?: string;
  durability?: Durability;
}

export interface WriteReply {
  type: 'write-reply';
  v: typeof PROTOCOL_VERSION;
  lsn: string;
  epoch: number;
  results: ExecResult[];
  /** True when the answer was the stored one of an earlier request with the same idempotency key. */
  replayed?: boolean;
}

export interface QueryRequest {
  type: 'query';
  v: typeof PROTOCOL_VERSION;
  sql: string;
  params?: SqlValue[] | Record<string, SqlValue>;
  /** Serve only once this LSN is applied, waiting up to `waitMs`. */
  minLsn?: string;
  /**
   * With minLsn: the epoch of the write at minLsn (its reply carried it). A node whose entry at
   * minLsn is of another epoch refuses with STALE_EPOCH: that write is not in its history (lost
   * in a failover), so no read there can contain it.
   */
  minEpoch?: number;
  waitMs?: number;
  /** Leader only, with a valid lease. */
  requireLeader?: boolean;
  /** Serve only if this node's replication lag is at most this (bounded staleness). */
  maxLagMs?: number;
}

export interface QueryReply {
  type: 'query-reply';
  v: typeof PROTOCOL_VERSION;
  rows: Record<string, SqlValue>[];
  /** LSN applied on the serving node when the query ran. */
  lsn: string;
  servedBy: string;
}

export interface ErrorReply {
  type: 'error';
  v: typeof PROTOCOL_VERSION;
  error: WireError;
}

// ---- control (monitor/CLI → replicas) -------------------------------------------------------

export type ControlRequest =
  | { type: 'status'; v: typeof PROTOCOL_VERSION }
  | { type: 'checksums'; v: typeof PROTOCOL_VERSION }
  /** To the leader: stop writes, wait for `to` to catch up, hand it the lease (planned, no data loss). */
  | { type: 'switchover'; v: typeof PROTOCOL_VERSION; to: string; timeoutMs?: number }
  /** To any replica: the transactions it discarded when it rewound after a failover. */
  | { type: 'discarded'; v: typeof PROTOCOL_VERSION }
  /** To the leader: change the replication mode at run time (replicated, survives failover). */
  | { type: 'set-mode'; v: typeof PROTOCOL_VERSION; mode: string; syncFollowers?: number; syncPolicy?: string; syncTimeoutMs?: number }
  /** To a replica leading in an older epoch than the sender has seen: step down now. */
  | { type: 'step-down'; v: typeof PROTOCOL_VERSION; epoch: number; leader: string };

export interface SwitchoverReply {
  type: 'switchover-reply';
  v: typeof PROTOCOL_VERSION;
  from: string;
  to: string;
  /** Epoch of the new leader. */
  epoch: number;
  /** Last LSN of the old leader, which the new leader had when it took over. */
  lsn: string;
}

/** A transaction a replica had but the new leader did not: undone, and kept here. */
export interface DiscardedTransaction {
  node: string;
  lsn: string;
  epoch: number;
  /** Leader commit time of the transaction, ms. */
  ts: number;
  /** When it was undone, ms. */
  discardedAt: number;
  changes: Change[];
  cols: Record<string, string[]>;
}

export interface DiscardedReply {
  type: 'discarded-reply';
  v: typeof PROTOCOL_VERSION;
  node: string;
  transactions: DiscardedTransaction[];
}

// ---- monitor ----------------------------------------------------------------------------------

/** What the active monitor sees and decided; published every monitorIntervalMs. */
export interface MonitorStatus {
  type: 'monitor-status';
  v: typeof PROTOCOL_VERSION;
  monitor: string;
  active: boolean;
  leader: string | null;
  epoch: number;
  /** ok: a leader is serving; failing-over: promoting; no-candidate: leader dead and nobody eligible. */
  state: 'ok' | 'failing-over' | 'no-candidate' | 'standby';
  reason?: string;
  lastFailover?: { from: string | null; to: string; epoch: number; detectedAt: number; promotedAt: number };
  ts: number;
}

export interface StatusReply {
  type: 'status-reply';
  v: typeof PROTOCOL_VERSION;
  heartbeat: Heartbeat;
  /** Counters a test or operator can use to tell what happened (snapshots used, catch-ups run). */
  counters: Record<string, number>;
  /** The node's replication log: what it still keeps. */
  log: { oldestLsn: string; lastLsn: string; bytes: number };
}

export interface ChecksumsReply {
  type: 'checksums-reply';
  v: typeof PROTOCOL_VERSION;
  appliedLsn: string;
  tables: Record<string, { rows: number; sha256: string }>;
}
