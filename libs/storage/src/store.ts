/**
 * A replica's database: user tables, the replication log and positions in one SQLite file.
 *
 * The leader runs {@link Store.executeBatch} (group commit: many client transactions, one SQLite
 * commit, each in its own savepoint with its own outcome and LSN); a follower runs
 * {@link Store.applyEntries}. Both append to `_flotilla_log` in the same transaction as the data.
 * Owned by one actor: nothing here is safe to call concurrently, and nothing here does I/O other
 * than SQLite (snapshots run in a worker thread).
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  Change,
  ClusterSettings,
  EpochStart,
  ErrorCode,
  ExecResult,
  FlotillaError,
  payloadCrc,
  paramsToNative,
  Statement,
  toWire,
  TxnPayload,
  SqlValue,
} from '@flotilla/protocol';
import { CaptureReader, changeJson, installCapture, removeCaptureTriggers } from './capture';
import { ChangeApplier, DivergenceError } from './apply';
import { isInterrupt, SQL_TURN_MIN_LEFT_MS, SQL_TURN_TICK_MS, sqlTimeLeftMs, StatementGuard } from './statement-guard';
import { createSchema } from './schema';
import { createSnapshot, SnapshotFile, SnapshotOptions } from './snapshot';
import { classifyStatement, refusedPragma, StatementKind, touchesInternal, writesSqliteSequence } from './statement-kind';
import { Quarantine } from './quarantine';
import { replacedFileFor, syncDirectory } from './data-files';
import { toClientError } from './sql-error';
import { encodeColumnSql } from './capture';
import { listUserTables, quoteIdent, readTableMeta, replicationHazard, TableMeta } from './table-meta';

/** One committed transaction in the log. `lsn` is a JS number: safe up to 2^53 transactions. */
export interface LogEntry {
  lsn: number;
  epoch: number;
  /** Leader commit time, wall clock ms. */
  ts: number;
  /** CRC-32 of the UTF-8 bytes of `payload`. */
  crc: number;
  payload: string;
}

export interface WriteInput {
  statements: Statement[];
  idempotencyKey?: string;
}

export type WriteOutcome =
  | { ok: true; lsn: number; epoch: number; results: ExecResult[]; entry: LogEntry | null; replayed: boolean }
  | { ok: false; error: FlotillaError };

export interface QueryResult {
  rows: Record<string, SqlValue>[];
  /** LSN applied when the query's read transaction began. */
  lsn: number;
}

/** Limits, each named with its unit. */
export const STATEMENT_CACHE_MAX = 256;
export const QUERY_ROWS_MAX = 10_000;
/**
 * Largest log entry payload, as it travels: an entry goes whole in one NATS message (1 MiB by
 * default) as a JSON string, where every quote and backslash of the payload is escaped, so a bigger
 * transaction is refused with PAYLOAD_TOO_LARGE and rolled back: split it.
 */
export const ENTRY_PAYLOAD_BYTES_MAX = 900 * 1024;
/** Most bytes of rows (JSON) a query, or a write's SELECT/RETURNING, may return: its answer is one NATS message. */
export const RESULT_BYTES_MAX = 900 * 1024;

/**
 * Reads rows off `it` as wire values, refusing (413) past QUERY_ROWS_MAX rows or `bytesMax` bytes
 * of JSON counted from `bytesBefore`, while it reads: a result of hundreds of MB was built whole in
 * memory, then encoded, before the size check (a replica ran out of memory on one query).
 */
function boundedRows(it: IterableIterator<Record<string, unknown>>, bytesMax: number, what: string, bytesBefore: number): { rows: Record<string, SqlValue>[]; bytes: number } {
  const rows: Record<string, SqlValue>[] = [];
  let bytes = bytesBefore;
  for (const row of it) {
    if (rows.length >= QUERY_ROWS_MAX) {
      it.return?.();
      throw new FlotillaError(ErrorCode.PAYLOAD_TOO_LARGE, `${what}: more than ${QUERY_ROWS_MAX} rows; add a LIMIT`);
    }
    const wire = rowToWire(row);
    bytes += JSON.stringify(wire).length + 1;
    if (bytes > bytesMax) {
      it.return?.();
      throw new FlotillaError(ErrorCode.PAYLOAD_TOO_LARGE, `${what}: the rows take more than ${bytesMax} bytes, too many for one answer; return fewer (a LIMIT, fewer or smaller columns)`);
    }
    rows.push(wire);
  }
  return { rows, bytes };
}

/** Bytes of `payload` inside a change-stream message (UTF-8, JSON-escaped). */
export function entryWireBytes(payload: string): number {
  // Escaping makes a UTF-16 unit at most 6 bytes (\u00XX): below that, no need to measure.
  if (payload.length * 6 <= ENTRY_PAYLOAD_BYTES_MAX) return payload.length;
  return Buffer.byteLength(JSON.stringify(payload));
}
/**
 * How long an idempotency key is remembered after its write, whatever the log still holds (as
 * Stripe's 24 h): a retry within it is answered from memory, never applied twice; a retry later is
 * a new request. Each key costs a row of its answer.
 */
export const IDEMPOTENCY_KEY_RETENTION_MS = 24 * 60 * 60 * 1000;
/** Chunk of a snapshot's hashes when the caller names none (the leader passes its transfer chunk). */
export const SNAPSHOT_HASH_CHUNK_BYTES_DEFAULT = 1024 * 1024;

/** A rewind that cannot be done from the log: re-seed from a snapshot instead. */
export class RewindImpossibleError extends Error {
  override readonly name = 'RewindImpossibleError';
}

export interface StoreOptions {
  /** Wall clock for entry timestamps. */
  now?: () => number;
  /**
   * Longest a request's SQL may run (its statements together, on the leader; a query on any
   * replica) before SQLite stops it: STATEMENT_TIMEOUT, nothing applied. 0 or absent: no deadline.
   */
  statementTimeoutMs?: number;
}

/** Errors of requests that did not run, or were cut short, because other requests took this turn's SQL time. */
const turnSpent = new WeakSet<FlotillaError>();

/** True when `err` refused a request only because others took this turn's SQL time: nothing applied; run it again in a later turn. */
export function isTurnSpent(err: unknown): boolean {
  return err instanceof FlotillaError && turnSpent.has(err);
}

/** A request stopped by its deadline took the group's whole transaction with it (SQLite rolls back on an interrupted write). */
class TransactionLost extends Error {
  index = -1;
  constructor(readonly error: FlotillaError) {
    super(error.message);
  }
}

/** The WAL is written out to this size when a store opens (see Store.preallocateWal). */
export const WAL_PREALLOCATE_BYTES = 16 * 1024 * 1024;
/** A WAL grown past this is cut back to it after the checkpoint that resets it (journal_size_limit). */
export const WAL_JOURNAL_SIZE_LIMIT_BYTES = 2 * WAL_PREALLOCATE_BYTES;

/** Another node's last known applied LSN and when it was last heard from (wall clock, ms). */
export interface KnownPosition {
  applied: number;
  heardMs: number;
}

export class Store {
  private db!: Database.Database;
  private readDb!: Database.Database;
  private capture: CaptureReader | null = null;
  private metas = new Map<string, TableMeta>();
  private applier!: ChangeApplier;
  private stmtCache = new Map<string, Database.Statement>();
  private last = 0;
  private lastTs = 0;
  private lastEpoch = 0;
  private logBytes = 0;
  private durability: 'full' | 'deferred' = 'full';
  /**
   * Bumped whenever the log loses its tail (rewind) or the database is replaced (snapshot): a
   * flush that began before cannot vouch for what the log holds now.
   */
  private generation = 0;
  /** The WAL, open for {@link syncWalAsync}; null until first needed and after every close. */
  private walFd: number | null = null;
  /** WAL fds given up while a flush on them ran: closed when their last flush returns (no reuse under it). */
  private walFdsClosing = new Set<number>();
  private walSyncsInFlight = new Map<number, number>();
  private readonly now: () => number;
  private readonly statementTimeoutMs: number;
  /** Statement deadlines of the write and the read connection; null when off (see statement-guard.ts). */
  private guard: StatementGuard | null = null;
  private readGuard: StatementGuard | null = null;
  private q!: ReturnType<Store['prepareInternal']>;
  /** Transactions undone by rewinds; survives re-seeds (its own file). */
  readonly quarantine: Quarantine;

  private constructor(
    readonly file: string,
    options: StoreOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.statementTimeoutMs = options.statementTimeoutMs ?? 0;
    this.quarantine = new Quarantine(file.replace(/\.sqlite$/, '') + '.quarantine.sqlite');
  }

  /** Opens (creating if needed) the database file and reads the positions it holds. */
  static open(file: string, options: StoreOptions = {}): Store {
    const s = new Store(file, options);
    s.openFiles();
    return s;
  }

  private openFiles(): void {
    this.db = new Database(this.file);
    this.db.pragma('journal_mode = WAL');
    // A long read (a snapshot being made) holds checkpoints back and the WAL grows; without a limit
    // it stays at its largest size (600 MB measured) until the store closes. Above the
    // preallocated size, so a WAL of normal size is never cut.
    this.db.pragma(`journal_size_limit = ${WAL_JOURNAL_SIZE_LIMIT_BYTES}`);
    // fsync on every commit: an acknowledged write survives power loss (group commit amortises it).
    this.db.pragma(`synchronous = ${this.durability === 'full' ? 'FULL' : 'NORMAL'}`);
    this.db.pragma('temp_store = MEMORY');
    this.db.pragma('cache_size = -65536');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('recursive_triggers = ON');
    // Off until this store captures (leads): better-sqlite3 is built with foreign keys on by
    // default, and a follower applying the leader's rows (cascades included, in the leader's order)
    // must not check or cascade them again.
    this.db.pragma('foreign_keys = OFF');
    createSchema(this.db);
    this.preallocateWal();
    this.readDb = new Database(this.file, { readonly: true });
    this.readDb.pragma('busy_timeout = 5000');
    if (this.statementTimeoutMs > 0) {
      this.guard = StatementGuard.attach(this.db);
      this.readGuard = this.guard && StatementGuard.attach(this.readDb);
    }
    this.q = this.prepareInternal();
    this.applier = new ChangeApplier(this.db);
    const meta = this.q.meta.all() as { key: string; value: number }[];
    const m = Object.fromEntries(meta.map((r) => [r.key, Number(r.value)]));
    this.last = m.applied_lsn ?? 0;
    this.lastTs = m.applied_ts ?? 0;
    this.lastEpoch = m.applied_epoch ?? 0;
    const maxLog = (this.db.prepare('SELECT max(lsn) AS lsn FROM _flotilla_log').get() as { lsn: number | null }).lsn ?? 0;
    if (maxLog > this.last || (maxLog > 0 && maxLog !== this.last)) {
      throw new DivergenceError(`${this.file}: log ends at ${maxLog} but applied_lsn is ${this.last}`);
    }
    this.logBytes = (this.db.prepare('SELECT coalesce(sum(size), 0) AS b FROM _flotilla_log').get() as { b: number }).b;
  }

  private prepareInternal() {
    const db = this.db;
    return {
      meta: db.prepare('SELECT key, value FROM _flotilla_meta'),
      setApplied: db.prepare(
        "UPDATE _flotilla_meta SET value = CASE key WHEN 'applied_lsn' THEN @lsn WHEN 'applied_ts' THEN @ts ELSE @epoch END WHERE key IN ('applied_lsn', 'applied_ts', 'applied_epoch')",
      ),
      appendLog: db.prepare('INSERT INTO _flotilla_log(lsn, epoch, ts, crc, size, payload) VALUES (?, ?, ?, ?, ?, ?)'),
      idemGet: db.prepare('SELECT lsn, epoch, results, req FROM _flotilla_idem WHERE key = ?'),
      idemPut: db.prepare('INSERT INTO _flotilla_idem(key, lsn, epoch, results, ts, req) VALUES (?, ?, ?, ?, ?, ?)'),
      idemTrim: db.prepare('DELETE FROM _flotilla_idem WHERE key IN (SELECT key FROM _flotilla_idem WHERE ts < ? ORDER BY ts LIMIT ?)'),
      epochPut: db.prepare('INSERT OR IGNORE INTO _flotilla_epochs(epoch, start_lsn) VALUES (?, ?)'),
      epochs: db.prepare('SELECT epoch, start_lsn AS startLsn FROM _flotilla_epochs ORDER BY epoch'),
      maxEpoch: db.prepare('SELECT max(epoch) FROM _flotilla_epochs').pluck(),
      epochsAboveFrom: db.prepare('SELECT min(start_lsn) FROM _flotilla_epochs WHERE epoch > ?').pluck(),
      epochsContradicted: db.prepare('DELETE FROM _flotilla_epochs WHERE epoch > ? AND start_lsn <= ?'),
      readLog: db.prepare('SELECT lsn, epoch, ts, crc, payload FROM _flotilla_log WHERE lsn > ? ORDER BY lsn LIMIT ?'),
      oldest: db.prepare('SELECT min(lsn) AS lsn FROM _flotilla_log'),
      lastInsertRowid: db.prepare('SELECT last_insert_rowid()').pluck(),
      settingsPut: db.prepare("INSERT OR REPLACE INTO _flotilla_meta(key, value) VALUES ('settings', ?)"),
      settingsGet: db.prepare("SELECT value FROM _flotilla_meta WHERE key = 'settings'").pluck(),
      positionsPut: db.prepare("INSERT OR REPLACE INTO _flotilla_meta(key, value) VALUES ('known_positions', ?)"),
      positionsGet: db.prepare("SELECT value FROM _flotilla_meta WHERE key = 'known_positions'").pluck(),
      appliedRead: this.readDb.prepare("SELECT value FROM _flotilla_meta WHERE key = 'applied_lsn'").pluck(),
    };
  }

  /** Last LSN committed to this database (= applied; the log and data commit together). */
  get lastLsn(): number {
    return this.last;
  }
  /** Leader commit time of the last applied entry. */
  get lastTimestamp(): number {
    return this.lastTs;
  }
  /** Epoch of the last applied entry (Raft's lastLogTerm). */
  get lastEntryEpoch(): number {
    return this.lastEpoch;
  }

  /** Highest epoch this database knows of (history or last entry). */
  knownEpoch(): number {
    // Once per applied batch: one indexed lookup, not the whole history.
    return Math.max(this.lastEpoch, (this.q.maxEpoch.get() as number | null) ?? 0);
  }

  epochHistory(): EpochStart[] {
    return (this.q.epochs.all() as { epoch: number; startLsn: number }[]).map((r) => ({ epoch: r.epoch, startLsn: String(r.startLsn) }));
  }

  /** Leader: records that `epoch` starts after the current last LSN. */
  beginEpoch(epoch: number): void {
    if (epoch < this.knownEpoch()) throw new Error(`beginEpoch(${epoch}) below known epoch ${this.knownEpoch()}`);
    this.q.epochPut.run(epoch, this.last + 1);
  }

  /** Bytes of payload held in the log. */
  get logSizeBytes(): number {
    return this.logBytes;
  }

  // ---- leader ---------------------------------------------------------------------------------

  /**
   * When commits reach the disk. `full`: every commit fsyncs (the leader: an acknowledged write is
   * durable). `deferred`: commits are written but fsynced by {@link syncWal} when the caller says
   * (a follower: it flushes when a write waits for it, else every few ms). A process crash loses
   * nothing either way (the page cache survives it); a power loss can lose a deferred tail, which
   * the follower then fetches again — data, log and position stay consistent, being one file.
   */
  setDurability(durability: 'full' | 'deferred'): void {
    this.durability = durability;
    this.db.pragma(`synchronous = ${durability === 'full' ? 'FULL' : 'NORMAL'}`);
  }

  /** Makes every commit so far durable (fdatasync of the WAL); returns the LSN that is now flushed. */
  syncWal(): number {
    const lsn = this.last;
    const fd = this.openWal();
    if (fd !== null) fs.fdatasyncSync(fd);
    return lsn; // no WAL: everything is in the (synced) database file
  }

  /** The WAL's fd for flushes, opened once per open of the files; null while there is no WAL. */
  private openWal(): number | null {
    if (this.walFd === null) {
      try {
        this.walFd = fs.openSync(this.file + '-wal', 'r');
      } catch {
        return null;
      }
    }
    return this.walFd;
  }

  /**
   * Fills the WAL with zeros up to {@link WAL_PREALLOCATE_BYTES} (once per open; SQLite reuses the
   * file from the start after each checkpoint and never truncates it, and recovery stops at the first
   * frame whose salt does not match, so the zeros are never read as frames). A WAL that does not
   * grow needs no metadata in its fdatasync: on ext4 (data=ordered) a sync that must commit the
   * journal also waits for every other file's dirty data, which during a snapshot (hundreds of MB
   * written on the same disk) stalled the leader's flushes for 100–300 ms.
   */
  private preallocateWal(): void {
    const wal = this.file + '-wal';
    let fd: number;
    try {
      fd = fs.openSync(wal, 'r+');
    } catch {
      return; // no WAL yet: SQLite creates it on the first write
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size >= WAL_PREALLOCATE_BYTES) return;
      const zeros = Buffer.alloc(1024 * 1024);
      for (let at = size; at < WAL_PREALLOCATE_BYTES; at += zeros.length) {
        fs.writeSync(fd, zeros, 0, Math.min(zeros.length, WAL_PREALLOCATE_BYTES - at), at);
      }
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * {@link syncWal} on a libuv thread: the event loop goes on (applying, committing the next group)
   * while the disk flushes. Resolves with the LSN that is now durable: the last one committed
   * before the call (its WAL frames were written by then; fdatasync covers every write before it).
   * Checkpoints stay safe in `deferred` mode: with synchronous=NORMAL SQLite syncs the WAL before
   * it copies frames into the database file, and the database file after. Resolves with 0 when
   * the log was rewound or the database replaced meanwhile: the LSNs it covered may now name other
   * transactions, not yet flushed (the caller asks again).
   */
  syncWalAsync(): Promise<number> {
    const lsn = this.last;
    const generation = this.generation;
    const fd = this.openWal();
    if (fd === null) return Promise.resolve(lsn); // no WAL: everything is in the (synced) database file
    this.walSyncsInFlight.set(fd, (this.walSyncsInFlight.get(fd) ?? 0) + 1);
    // Callback fs, not fs.promises: a FileHandle promise costs several times the CPU per call.
    return new Promise((resolve, reject) =>
      fs.fdatasync(fd, (err) => {
        const left = this.walSyncsInFlight.get(fd)! - 1;
        if (left > 0) this.walSyncsInFlight.set(fd, left);
        else this.walSyncsInFlight.delete(fd);
        const closedUnder = this.walFdsClosing.has(fd);
        if (closedUnder && left === 0) {
          this.walFdsClosing.delete(fd);
          fs.closeSync(fd);
        }
        // Closed meanwhile (snapshot install, shutdown): that close checkpointed and synced it all.
        if (err && !closedUnder) reject(err);
        else resolve(generation === this.generation ? lsn : 0);
      }),
    );
  }

  /** Leader: install change capture and enforce foreign keys (followers apply rows without them). */
  startCapture(): void {
    this.db.pragma('foreign_keys = ON');
    this.metas = installCapture(this.db);
    this.capture = new CaptureReader(this.db);
  }

  /** Follower: remove change capture; applied rows must not be captured again. */
  stopCapture(): void {
    removeCaptureTriggers(this.db);
    this.db.pragma('foreign_keys = OFF');
    this.capture = null;
  }

  get capturing(): boolean {
    return this.capture !== null;
  }

  private prepareCached(sql: string): Database.Statement {
    let s = this.stmtCache.get(sql);
    if (s) {
      this.stmtCache.delete(sql);
      this.stmtCache.set(sql, s);
      return s;
    }
    s = this.db.prepare(sql);
    this.stmtCache.set(sql, s);
    if (this.stmtCache.size > STATEMENT_CACHE_MAX) this.stmtCache.delete(this.stmtCache.keys().next().value as string);
    return s;
  }

  /**
   * Leader: runs each request as its own transaction inside one SQLite transaction (group commit).
   * Each request gets its own outcome; a failing request is rolled back to its savepoint and never
   * affects the others. Requests whose idempotency key is known get the stored answer.
   * Returns one outcome per request, in order. Throws only if the commit itself fails, in which
   * case nothing of the batch is applied.
   */
  executeBatch(requests: WriteInput[], epoch: number): WriteOutcome[] {
    if (requests.length === 0) return [];
    try {
      return this.executeGroup(requests, epoch);
    } catch (err) {
      // One request ran past its deadline in a write statement, and SQLite rolled the whole
      // transaction back: that request failed (it is not run again); the others run again without it.
      if (err instanceof TransactionLost) {
        const i = err.index;
        return [...this.executeBatch(requests.slice(0, i), epoch), { ok: false, error: err.error }, ...this.executeBatch(requests.slice(i + 1), epoch)];
      }
      // The group's transaction failed as a whole, which one request can cause: a deferred foreign
      // key checked at COMMIT, or ON CONFLICT ROLLBACK ending the transaction under its savepoint.
      // Each request then runs alone, so only the offender fails, with its own error, instead of
      // every client of the group getting a retryable 503 (and a retrying offender failing them again).
      if (requests.length > 1) return requests.flatMap((r) => this.executeBatch([r], epoch));
      const own = ownCommitError(err);
      if (own) return [{ ok: false, error: own }];
      throw err;
    }
  }

  private executeGroup(requests: WriteInput[], epoch: number): WriteOutcome[] {
    if (!this.capture) throw new Error('executeBatch on a store that is not capturing (not leader)');
    const capture = this.capture;
    const outcomes: WriteOutcome[] = [];
    const firstLsn = this.last;
    const firstBytes = this.logBytes;
    const appended: LogEntry[] = [];
    this.db.exec('BEGIN IMMEDIATE');
    try {
      for (let i = 0; i < requests.length; i++) {
        try {
          outcomes.push(this.executeOne(requests[i], epoch, capture, appended));
        } catch (err) {
          if (err instanceof TransactionLost) err.index = i;
          throw err;
        }
      }
      if (this.last !== firstLsn) {
        this.q.setApplied.run({ lsn: this.last, ts: this.lastTs, epoch });
      }
      this.db.exec('COMMIT');
      if (this.last !== firstLsn) this.lastEpoch = epoch;
    } catch (err) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      this.last = firstLsn;
      this.logBytes = firstBytes;
      this.metas = installCapture(this.db);
      throw err;
    }
    return outcomes;
  }

  private executeOne(req: WriteInput, epoch: number, capture: CaptureReader, appended: LogEntry[]): WriteOutcome {
    const reqDigest = req.idempotencyKey === undefined ? '' : requestDigest(req);
    if (req.idempotencyKey !== undefined) {
      const seen = this.q.idemGet.get(req.idempotencyKey) as { lsn: number; epoch: number; results: string; req: string } | undefined;
      if (seen && seen.req !== '' && seen.req !== reqDigest) {
        return {
          ok: false,
          error: new FlotillaError(ErrorCode.CONFLICT, `idempotencyKey ${JSON.stringify(req.idempotencyKey)} was used for a different request (applied at LSN ${seen.lsn}); use a new key for a new request`),
        };
      }
      if (seen) return { ok: true, lsn: seen.lsn, epoch: seen.epoch, results: JSON.parse(seen.results), entry: null, replayed: true };
    }
    this.db.exec('SAVEPOINT req');
    const changes: string[] = [];
    /** Each table whose rows were captured, with its columns at that moment (see drainInto). */
    const touched = new Map<string, string[]>();
    let hadDdl = false;
    try {
      const results: ExecResult[] = [];
      let resultBytes = 0;
      const armedAt = this.armDeadline(this.guard, 'request');
      try {
        req.statements.forEach((st, i) => {
          const where = `statement ${i + 1}`;
          const kind = classifyStatement(st.sql);
          if (kind.kind === StatementKind.REFUSED) throw new FlotillaError(ErrorCode.BAD_REQUEST, `${where}: ${kind.reason}`);
          if (touchesInternal(st.sql)) throw new FlotillaError(ErrorCode.BAD_REQUEST, `${where}: tables named _flotilla* are reserved for replication`);
          if (writesSqliteSequence(st.sql)) throw new FlotillaError(ErrorCode.BAD_REQUEST, `${where}: sqlite_sequence is SQLite's own AUTOINCREMENT bookkeeping and is not replicated; it may be read, not written`);
          try {
            if (kind.kind === StatementKind.DDL) {
              // Replicated as its text alone: a parameter would be bound here and NULL on followers.
              if (st.params != null && Object.keys(st.params).length > 0) throw new FlotillaError(ErrorCode.BAD_REQUEST, `${where}: a schema change takes no parameters (it is replicated as its SQL text)`);
              if (kind.dropsTable !== undefined) this.refuseCascadingDrop(kind.dropsTable, where);
              this.drainInto(capture, changes, touched);
              hadDdl = true;
              removeCaptureTriggers(this.db);
              const s = this.db.prepare(st.sql);
              const r = s.run(...paramsToNative(st.params));
              changes.push(JSON.stringify({ op: 'ddl', sql: st.sql } satisfies Change));
              this.metas = installCapture(this.db);
              this.stmtCache.clear();
              // last_insert_rowid() is per connection: a schema change inserted nothing.
              results.push({ changes: r.changes, lastInsertRowid: '0' });
            } else {
              const s = this.prepareCached(st.sql);
              if (s.reader) {
                // The answer travels back in one NATS message (1 MiB): past that it could not be
                // sent at all (the leader died trying), so the request is refused before it commits,
                // as soon as its rows pass the bound (not once they are all in memory).
                const it = s.iterate(...paramsToNative(st.params)) as IterableIterator<Record<string, unknown>>;
                const got = boundedRows(it, RESULT_BYTES_MAX, `${where} (nothing was applied)`, resultBytes);
                resultBytes = got.bytes;
                const r: ExecResult & { rows?: unknown[] } = {
                  changes: s.readonly ? 0 : got.rows.length,
                  lastInsertRowid: String(this.q.lastInsertRowid.get()),
                };
                r.rows = got.rows;
                results.push(r);
              } else {
                const r = s.run(...paramsToNative(st.params));
                results.push({ changes: r.changes, lastInsertRowid: String(r.lastInsertRowid) });
              }
            }
          } catch (err) {
            if (!isInterrupt(err)) throw toClientError(err, where);
            // An interrupted write statement makes SQLite roll the whole transaction back.
            const stopped = this.deadlineError(where, armedAt);
            throw this.db.inTransaction ? stopped : new TransactionLost(stopped);
          }
        });
      } finally {
        this.guard?.disarm();
      }
      this.drainInto(capture, changes, touched);
      // The entry names each table's columns once: rows captured before a schema change of their
      // table would be applied under the new columns (or a dropped table) on followers. Only a
      // request with DDL can have changed them.
      if (hadDdl) {
        for (const [t, colsThen] of touched) {
          if ((this.metas.get(t)?.cols ?? []).join('\u0000') !== colsThen.join('\u0000')) {
            throw new FlotillaError(ErrorCode.BAD_REQUEST, `this request changes rows of ${t} and then changes or drops ${t} itself; send the schema change in a request of its own`);
          }
        }
        // A schema that row-based replication cannot follow is refused with the request that makes it.
        for (const m of this.metas.values()) {
          const hazard = replicationHazard(this.db, m);
          if (hazard !== null) throw new FlotillaError(ErrorCode.BAD_REQUEST, hazard);
        }
      }
      if (changes.length === 0 && req.idempotencyKey === undefined) {
        this.db.exec('RELEASE req');
        // Nothing logged: the answer names the last entry, with that entry's epoch (a read with
        // minLsn/minEpoch checks the pair; after a failover it is not yet this leader's epoch).
        return { ok: true, lsn: this.last, epoch: appended.length > 0 ? epoch : this.lastEpoch, results, entry: null, replayed: false };
      }
      const lsn = this.last + 1;
      const ts = this.now();
      const cols: Record<string, string[]> = {};
      for (const t of touched.keys()) cols[t] = this.metas.get(t)?.cols ?? [];
      // A keyed request's answer is kept whole (RETURNING rows too): its retry gets the same answer,
      // on any leader. An unkeyed one's answer is never asked for again: the entry does not carry it
      // (every follower would parse and every log would keep it for nothing).
      const kept = req.idempotencyKey !== undefined ? JSON.stringify(results) : '';
      const payload =
        `{"format":"logical","changes":[${changes.join(',')}],"cols":${JSON.stringify(cols)}` +
        (req.idempotencyKey !== undefined ? `,"idem":${JSON.stringify(req.idempotencyKey)},"idemReq":"${reqDigest}","results":${kept}}` : '}');
      const wireBytes = entryWireBytes(payload);
      if (wireBytes > ENTRY_PAYLOAD_BYTES_MAX) {
        throw new FlotillaError(
          ErrorCode.PAYLOAD_TOO_LARGE,
          `the transaction's changes take ${wireBytes} bytes in a replication message, more than ${ENTRY_PAYLOAD_BYTES_MAX}; split it into smaller requests`,
        );
      }
      const entry: LogEntry = { lsn, epoch, ts, crc: payloadCrc(payload), payload };
      this.q.appendLog.run(lsn, epoch, ts, entry.crc, payload.length, payload);
      if (req.idempotencyKey !== undefined) this.q.idemPut.run(req.idempotencyKey, lsn, epoch, kept, ts, reqDigest);
      this.db.exec('RELEASE req');
      this.last = lsn;
      this.lastTs = ts;
      this.logBytes += payload.length;
      appended.push(entry);
      return { ok: true, lsn, epoch, results, entry, replayed: false };
    } catch (err) {
      if (err instanceof TransactionLost) throw err; // no savepoint left to roll back to
      this.db.exec('ROLLBACK TO req');
      this.db.exec('RELEASE req');
      capture.drain();
      if (hadDdl) {
        this.metas = installCapture(this.db);
        this.stmtCache.clear();
      }
      return { ok: false, error: toClientError(err, 'request') };
    }
  }

  /**
   * With foreign keys on (the leader), DROP TABLE first deletes the table's rows without firing
   * triggers, and those deletes cascade into referencing tables: changes no capture sees, which
   * followers (foreign keys off) would never make. Refused while such rows exist.
   */
  private refuseCascadingDrop(table: string, where: string): void {
    const tables = [...this.metas.keys()]; // every user table (capture's view of the schema)
    const name = tables.find((t) => t.toUpperCase() === table);
    if (name === undefined) return; // no such table: SQLite's own error follows
    if (!this.db.prepare(`SELECT 1 FROM main.${quoteIdent(name)} LIMIT 1`).get()) return;
    const referencing = tables.filter(
      (t) => t !== name && this.db.prepare('SELECT 1 FROM pragma_foreign_key_list(?) WHERE upper("table") = ?').get(t, table) !== undefined,
    );
    if (referencing.length > 0) {
      throw new FlotillaError(
        ErrorCode.BAD_REQUEST,
        `${where}: ${name} still has rows and ${referencing.join(', ')} refer${referencing.length === 1 ? 's' : ''} to it by foreign key; dropping it would change ${referencing.length === 1 ? 'that table' : 'those tables'} unseen by replication: DELETE FROM ${name} first (replicated as rows), then drop it in a request of its own`,
      );
    }
  }

  /** Moves captured rows into `changes`; `touched` maps each table to its columns when its rows were captured. */
  private drainInto(capture: CaptureReader, changes: string[], touched: Map<string, string[]>): void {
    for (const row of capture.drain()) {
      changes.push(changeJson(row));
      if (!touched.has(row.tbl)) touched.set(row.tbl, this.metas.get(row.tbl)?.cols ?? []);
    }
  }

  /**
   * What this node last knew of other nodes' positions (for log retention across restarts and
   * leader changes). Local to this node, never replicated; unreadable contents read as none.
   */
  readKnownPositions(): Record<string, KnownPosition> {
    const v = this.q.positionsGet.get() as string | undefined;
    if (!v) return {};
    try {
      const parsed = JSON.parse(v) as Record<string, KnownPosition>;
      const out: Record<string, KnownPosition> = {};
      for (const [node, p] of Object.entries(parsed)) {
        if (p && Number.isSafeInteger(p.applied) && p.applied >= 0 && Number.isFinite(p.heardMs)) out[node] = { applied: p.applied, heardMs: p.heardMs };
      }
      return out;
    } catch {
      return {};
    }
  }

  writeKnownPositions(positions: Record<string, KnownPosition>): void {
    this.q.positionsPut.run(JSON.stringify(positions));
  }

  /** Cluster settings last set at run time (replicated), or null when never set. */
  readSettings(): ClusterSettings | null {
    const v = this.q.settingsGet.get() as string | undefined;
    return v ? (JSON.parse(v) as ClusterSettings) : null;
  }

  /**
   * Leader: records new cluster settings as a log entry of their own, so every replica stores
   * them in the same order as data and a new leader after failover uses them.
   */
  writeSettings(settings: ClusterSettings, epoch: number): LogEntry {
    if (!this.capture) throw new Error('writeSettings on a store that is not leading');
    const lsn = this.last + 1;
    const ts = this.now();
    const payload = JSON.stringify({ format: 'logical', changes: [], cols: {}, results: [], settings, previousSettings: this.readSettings() } satisfies TxnPayload);
    const entry: LogEntry = { lsn, epoch, ts, crc: payloadCrc(payload), payload };
    this.db.transaction(() => {
      this.q.appendLog.run(lsn, epoch, ts, entry.crc, payload.length, payload);
      this.q.settingsPut.run(JSON.stringify(settings));
      this.q.setApplied.run({ lsn, ts, epoch });
    })();
    this.last = lsn;
    this.lastTs = ts;
    this.lastEpoch = epoch;
    this.logBytes += payload.length;
    return entry;
  }

  // ---- follower -------------------------------------------------------------------------------

  /**
   * Follower: applies entries (which must continue the log without a gap) in one transaction,
   * appending them to this replica's own log. Throws {@link DivergenceError} (and applies
   * nothing) when an entry does not fit: the caller must stop rather than serve wrong data.
   */
  applyEntries(entries: LogEntry[]): void {
    if (entries.length === 0) return;
    if (this.capture) throw new Error('applyEntries on a capturing store (leader)');
    const before = { last: this.last, ts: this.lastTs, epoch: this.lastEpoch, bytes: this.logBytes };
    let knownEpoch = this.knownEpoch();
    /** The first LSN of any epoch above `aboveFor` in the history (looked up once per epoch met). */
    let aboveFrom: number | null = null;
    let aboveFor = -1;
    this.db.exec('BEGIN IMMEDIATE');
    try {
      for (const e of entries) {
        if (e.lsn !== this.last + 1) throw new DivergenceError(`entry ${e.lsn} does not follow ${this.last}`);
        if (payloadCrc(e.payload) !== e.crc) throw new DivergenceError(`entry ${e.lsn}: checksum mismatch`);
        const p = JSON.parse(e.payload) as TxnPayload;
        for (const c of p.changes) {
          try {
            this.applier.apply(c, c.op === 'ddl' ? undefined : p.cols[c.t]);
          } catch (err) {
            if (err instanceof DivergenceError) throw new DivergenceError(`apply entry ${e.lsn}: ${err.message}`);
            throw new DivergenceError(`apply entry ${e.lsn}: ${(err as Error).message}`);
          }
        }
        if (p.settings) this.q.settingsPut.run(JSON.stringify(p.settings));
        if (e.epoch > knownEpoch) {
          this.q.epochPut.run(e.epoch, e.lsn);
          knownEpoch = e.epoch;
        } else if (e.epoch < knownEpoch) {
          // An epoch above this entry's that starts at or before it is contradicted by it: this node
          // began that epoch (promoted while behind), wrote nothing in it, and now follows a leader
          // with more of the older epoch. Left in place, it would name the epoch of these LSNs once
          // their entries are trimmed. (Epochs that start later, merged from the leader, stay.)
          if (aboveFor !== e.epoch) {
            aboveFrom = this.q.epochsAboveFrom.get(e.epoch) as number | null;
            aboveFor = e.epoch;
          }
          if (aboveFrom !== null && aboveFrom <= e.lsn) {
            this.q.epochsContradicted.run(e.epoch, e.lsn);
            knownEpoch = this.knownEpoch();
            aboveFor = -1;
          }
        }
        this.q.appendLog.run(e.lsn, e.epoch, e.ts, e.crc, e.payload.length, e.payload);
        if (p.idem !== undefined) this.q.idemPut.run(p.idem, e.lsn, e.epoch, JSON.stringify(p.results), e.ts, p.idemReq ?? '');
        this.last = e.lsn;
        this.lastTs = e.ts;
        this.lastEpoch = e.epoch;
        this.logBytes += e.payload.length;
      }
      this.q.setApplied.run({ lsn: this.last, ts: this.lastTs, epoch: this.lastEpoch });
      this.db.exec('COMMIT');
    } catch (err) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      this.last = before.last;
      this.lastTs = before.ts;
      this.lastEpoch = before.epoch;
      this.logBytes = before.bytes;
      this.applier.invalidate();
      throw err;
    }
  }

  /** Records epoch starts learned from the leader (catch-up replies carry its history). */
  mergeEpochHistory(history: EpochStart[]): void {
    for (const h of history) this.q.epochPut.run(h.epoch, Number(h.startLsn));
  }

  // ---- divergence and rewind -------------------------------------------------------------------

  /** Epoch of the entry at `lsn` (0 for LSN 0): from the log if kept, else from the epoch history. */
  epochAt(lsn: number): number {
    if (lsn <= 0) return 0;
    if (lsn === this.last) return this.lastEpoch;
    const e = this.db.prepare('SELECT epoch FROM _flotilla_log WHERE lsn = ?').pluck().get(lsn) as number | undefined;
    if (e !== undefined) return e;
    const h = this.db.prepare('SELECT max(epoch) FROM _flotilla_epochs WHERE start_lsn <= ?').pluck().get(lsn) as number | null;
    return h ?? this.lastEpoch;
  }

  /**
   * Leader: the last LSN this log holds in an epoch ≤ `epoch` (Kafka's end offset for a leader
   * epoch): a follower whose log goes further in that epoch has entries this log never had.
   */
  lastLsnOfEpoch(epoch: number): number {
    const next = this.db.prepare('SELECT min(start_lsn) FROM _flotilla_epochs WHERE epoch > ?').pluck().get(epoch) as number | null;
    return next === null ? this.last : Math.min(this.last, next - 1);
  }

  /**
   * Follower: undoes every transaction after `lsn`, newest first, with the before-images of the
   * log, and keeps them in the quarantine. One transaction: all undone or none. Throws
   * {@link RewindImpossibleError} when an entry is missing (trimmed) or cannot be undone (DDL);
   * the caller then keeps them with {@link quarantineAfter} and re-seeds from a snapshot.
   */
  rewindTo(lsn: number): LogEntry[] {
    if (this.capture) throw new Error('rewindTo on a capturing store (leader)');
    if (lsn >= this.last) return [];
    const entries = this.db.prepare('SELECT lsn, epoch, ts, crc, payload FROM _flotilla_log WHERE lsn > ? ORDER BY lsn DESC').all(lsn) as LogEntry[];
    if (entries.length !== this.last - lsn) {
      throw new RewindImpossibleError(`entries ${lsn + 1}..${this.last} are not all in the log (${entries.length} kept)`);
    }
    const discardedAt = this.now();
    // Kept first, durably: a crash in between leaves them both kept and still applied, never lost.
    this.quarantine.add(entries, discardedAt);
    const before = { last: this.last, ts: this.lastTs, epoch: this.lastEpoch, bytes: this.logBytes };
    this.db.exec('BEGIN IMMEDIATE');
    try {
      for (const e of entries) {
        const p = JSON.parse(e.payload) as TxnPayload;
        for (const c of [...p.changes].reverse()) {
          if (c.op === 'ddl') throw new RewindImpossibleError(`entry ${e.lsn} changed the schema (${c.sql.slice(0, 60)})`);
          try {
            this.applier.undo(c, p.cols[c.t]);
          } catch (err) {
            throw new RewindImpossibleError(`undo entry ${e.lsn}: ${(err as Error).message}`);
          }
        }
        if (p.settings) {
          // The before-image: the settings this entry replaced (newest first, so the oldest wins).
          if (p.previousSettings) this.q.settingsPut.run(JSON.stringify(p.previousSettings));
          else this.db.prepare("DELETE FROM _flotilla_meta WHERE key = 'settings'").run();
        }
        this.logBytes -= e.payload.length;
      }
      this.db.prepare('DELETE FROM _flotilla_log WHERE lsn > ?').run(lsn);
      this.db.prepare('DELETE FROM _flotilla_idem WHERE lsn > ?').run(lsn);
      this.db.prepare('DELETE FROM _flotilla_epochs WHERE start_lsn > ?').run(lsn);
      const prev = this.db.prepare('SELECT epoch, ts FROM _flotilla_log WHERE lsn = ?').get(lsn) as { epoch: number; ts: number } | undefined;
      this.generation++;
      this.last = lsn;
      this.lastEpoch = prev?.epoch ?? this.epochAtHistory(lsn);
      this.lastTs = prev?.ts ?? 0;
      this.q.setApplied.run({ lsn: this.last, ts: this.lastTs, epoch: this.lastEpoch });
      this.db.exec('COMMIT');
    } catch (err) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      Object.assign(this, { last: before.last, lastTs: before.ts, lastEpoch: before.epoch, logBytes: before.bytes });
      this.applier.invalidate();
      throw err;
    }
    this.applier.invalidate();
    return entries;
  }

  /** Keeps every log entry after `lsn` in the quarantine (before a re-seed replaces them). */
  quarantineAfter(lsn: number): number {
    const entries = this.db.prepare('SELECT lsn, epoch, ts, crc, payload FROM _flotilla_log WHERE lsn > ? ORDER BY lsn').all(lsn) as LogEntry[];
    this.quarantine.add(entries, this.now());
    return entries.length;
  }

  private epochAtHistory(lsn: number): number {
    return (this.db.prepare('SELECT max(epoch) FROM _flotilla_epochs WHERE start_lsn <= ?').pluck().get(lsn) as number | null) ?? 0;
  }

  // ---- log ------------------------------------------------------------------------------------

  /** Entries with LSN > `afterLsn`, in order, up to about `maxBytes` of payload (at least one). */
  readLogAfter(afterLsn: number, maxBytes: number, maxEntries = 10_000): LogEntry[] {
    const rows = this.q.readLog.all(afterLsn, maxEntries) as LogEntry[];
    let bytes = 0;
    const out: LogEntry[] = [];
    for (const r of rows) {
      bytes += r.payload.length + 64;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(r);
    }
    return out;
  }

  /** First LSN still in the log (lastLsn + 1 when the log is empty). */
  oldestLsn(): number {
    const r = this.q.oldest.get() as { lsn: number | null };
    return r.lsn ?? this.last + 1;
  }

  /** Deletes log entries with LSN ≤ `lsn`, at most `maxRows` per call; returns how many. */
  truncateLogThrough(lsn: number, maxRows = 10_000): number {
    const upTo = Math.min(lsn, this.last);
    const oldest = this.oldestLsn();
    const end = Math.min(upTo, oldest + maxRows - 1);
    if (end < oldest) return 0;
    const bytes = (this.db.prepare('SELECT coalesce(sum(size), 0) AS b FROM _flotilla_log WHERE lsn <= ?').get(end) as { b: number }).b;
    const r = this.db.prepare('DELETE FROM _flotilla_log WHERE lsn <= ?').run(end);
    // Idempotency keys outlive their entries (trimIdempotencyKeys): a retry after the log moved on
    // must still be answered from memory, not applied again.
    this.logBytes -= bytes;
    return r.changes;
  }

  /** Forgets idempotency keys of writes made before `beforeTs` (ms), at most `maxRows`; returns how many. */
  trimIdempotencyKeys(beforeTs: number, maxRows = 10_000): number {
    return this.q.idemTrim.run(beforeTs, maxRows).changes;
  }

  /** Log entries (LSN, ts, bytes) from the oldest after `afterLsn`, for retention; at most `limit`. */
  oldestEntries(limit: number, afterLsn = 0): { lsn: number; ts: number; bytes: number }[] {
    return this.db.prepare('SELECT lsn, ts, size AS bytes FROM _flotilla_log WHERE lsn > ? ORDER BY lsn LIMIT ?').all(afterLsn, limit) as {
      lsn: number;
      ts: number;
      bytes: number;
    }[];
  }

  // ---- reads ----------------------------------------------------------------------------------

  /** Runs a read-only statement on the read connection; writes are refused with WRITE_IN_QUERY. */
  query(sql: string, params?: Statement['params']): QueryResult {
    if (touchesInternal(sql)) throw new FlotillaError(ErrorCode.BAD_REQUEST, 'tables named _flotilla* are reserved for replication');
    const pragma = refusedPragma(sql);
    if (pragma !== null) throw new FlotillaError(ErrorCode.BAD_REQUEST, `query: ${pragma}`);
    let stmt: Database.Statement;
    try {
      stmt = this.readDb.prepare(sql);
    } catch (err) {
      throw toClientError(err, 'query');
    }
    if (!stmt.readonly || !stmt.reader) {
      throw new FlotillaError(ErrorCode.WRITE_IN_QUERY, 'query: only read-only statements that return rows are allowed here; send writes to /v1/execute');
    }
    const armedAt = this.armDeadline(this.readGuard, 'query');
    try {
      const run = this.readDb.transaction(() => {
        const lsn = Number(this.q.appliedRead.get());
        const it = stmt.iterate(...paramsToNative(params)) as IterableIterator<Record<string, unknown>>;
        return { rows: boundedRows(it, RESULT_BYTES_MAX, 'query', 0).rows, lsn };
      });
      return run();
    } catch (err) {
      if (isInterrupt(err)) throw this.deadlineError('query', armedAt);
      throw toClientError(err, 'query');
    } finally {
      this.readGuard?.disarm();
    }
  }

  /** Arms `guard` for a request starting now (see sqlTimeLeftMs); returns when. Refuses (503) when this turn's SQL time is spent. */
  private armDeadline(guard: StatementGuard | null, where: string): number {
    if (guard === null) return 0;
    const left = sqlTimeLeftMs(this.statementTimeoutMs);
    if (left < SQL_TURN_MIN_LEFT_MS) throw this.busyError(where);
    guard.arm(Math.ceil(left));
    return performance.now();
  }

  /** The error of a request its deadline stopped: its own (400) when it ran its whole timeout, else the turn's (503). */
  private deadlineError(where: string, armedAt: number): FlotillaError {
    if (performance.now() - armedAt < this.statementTimeoutMs - SQL_TURN_TICK_MS) return this.busyError(where);
    return new FlotillaError(
      ErrorCode.STATEMENT_TIMEOUT,
      `${where}: stopped after ${this.statementTimeoutMs} ms (statementTimeoutMs); nothing of the request was applied. Make it cheaper (an index, a LIMIT, smaller requests)`,
    );
  }

  private busyError(where: string): FlotillaError {
    const e = new FlotillaError(
      ErrorCode.UNAVAILABLE,
      `${where}: this replica's time for SQL was taken by other requests (each may run up to statementTimeoutMs, ${this.statementTimeoutMs} ms, between two turns of its event loop); nothing of the request was applied; retry`,
    );
    turnSpent.add(e);
    return e;
  }

  /** Whether statement deadlines are on (the store was opened with one and the guard loaded). */
  get statementDeadlines(): boolean {
    return this.guard !== null && this.readGuard !== null;
  }

  // ---- snapshots ------------------------------------------------------------------------------

  /**
   * A consistent copy of this database at an exact LSN, made in a worker thread without blocking
   * writes; `options.listener` hears of its progress, so the file can be read while it grows.
   */
  async snapshotTo(dest: string, options: SnapshotOptions = { chunkBytes: SNAPSHOT_HASH_CHUNK_BYTES_DEFAULT }): Promise<SnapshotFile> {
    fs.rmSync(dest, { force: true });
    return createSnapshot(this.file, dest, options);
  }

  /**
   * Replaces this database with a snapshot file (already verified by the caller), atomically:
   * close (which checkpoints the WAL away), remove WAL leftovers, rename over, reopen. The old
   * database is not freed here: it stays linked as {@link replacedFileFor}, whose path is
   * returned, for the caller to remove with {@link removeFilePaced} (freeing hundreds of MB at once
   * stalls every fsync on the disk; see data-files.ts). The name swap stays one atomic rename, so
   * a crash at any point leaves the old or the new database under the name, never neither.
   */
  replaceWithSnapshot(snapshotFile: string): string | null {
    const capturing = this.capturing;
    this.closeFiles();
    for (const ext of ['-wal', '-shm']) fs.rmSync(this.file + ext, { force: true });
    const replaced = replacedFileFor(this.file);
    fs.rmSync(replaced, { force: true });
    let kept: string | null = null;
    if (fs.existsSync(this.file)) {
      try {
        fs.linkSync(this.file, replaced);
        kept = replaced;
      } catch {
        // No hard links here: the rename frees the old database at once, as it always could.
      }
    }
    this.generation++;
    fs.renameSync(snapshotFile, this.file);
    // The rename must be on disk before this replica reports the snapshot's LSN as flushed.
    syncDirectory(path.dirname(this.file));
    this.stmtCache.clear();
    this.openFiles();
    if (capturing) this.startCapture();
    return kept;
  }

  // ---- checks ---------------------------------------------------------------------------------

  /** Per user table: row count and SHA-256 of its rows (type-exact encoding, in key order). */
  tableChecksums(): Record<string, { rows: number; sha256: string }> {
    return tableChecksums(this.readDb);
  }

  private closeFiles(): void {
    this.readDb.close();
    this.db.close();
    if (this.walFd !== null) {
      if (this.walSyncsInFlight.has(this.walFd)) this.walFdsClosing.add(this.walFd);
      else fs.closeSync(this.walFd);
      this.walFd = null;
    }
  }

  close(): void {
    if (this.db.open) this.closeFiles();
    this.quarantine.close();
  }
}

/** Checksums of every user table of an open database (any connection, read-only is enough). */
export function tableChecksums(db: Database.Database): Record<string, { rows: number; sha256: string }> {
  const out: Record<string, { rows: number; sha256: string }> = {};
  for (const t of listUserTables(db)) {
    const m = readTableMeta(db, t);
    const order = m.hasRowid ? 'rowid' : m.pk.map(quoteIdent).join(', ');
    const rowid = m.hasRowid ? `CAST(rowid AS TEXT) || ':' || ` : '';
    const cols = m.cols.map((c) => encodeColumnSql(quoteIdent(c))).join(', ');
    const hash = createHash('sha256');
    let rows = 0;
    const it = db.prepare(`SELECT ${rowid}json_array(${cols}) FROM main.${quoteIdent(t)} ORDER BY ${order}`).pluck().iterate();
    for (const line of it as IterableIterator<string>) {
      hash.update(line);
      hash.update('\n');
      rows++;
    }
    out[t] = { rows, sha256: hash.digest('hex') };
  }
  return out;
}

function rowToWire(row: Record<string, unknown>): Record<string, SqlValue> {
  const out: Record<string, SqlValue> = {};
  for (const k in row) out[k] = toWire(row[k]);
  return out;
}

/** Digest of what a keyed request asks for (its statements and parameters), to tell a reused key. */
function requestDigest(req: WriteInput): string {
  return createHash('sha256').update(JSON.stringify(req.statements)).digest('base64url').slice(0, 22);
}

/**
 * The client's error when a lone request's transaction failed by the request's own doing (nothing
 * of it was applied); undefined for a failure of the node (I/O, a full disk), which stays a 503.
 */
function ownCommitError(err: unknown): FlotillaError | undefined {
  const e = err as { code?: string; message?: string };
  const code = e?.code ?? '';
  if (code.startsWith('SQLITE_CONSTRAINT')) return toClientError(err, 'commit');
  if (/no such savepoint/i.test(e?.message ?? '')) {
    return new FlotillaError(ErrorCode.SQL_ERROR, 'a statement ended the transaction itself (ON CONFLICT ROLLBACK, or OR ROLLBACK): nothing of the request was applied; use ABORT, FAIL, IGNORE or REPLACE', { cause: err });
  }
  return undefined;
}
