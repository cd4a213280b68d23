/**
 * A deadline for the SQL of one request: past it SQLite interrupts the statement running. The
 * node's event loop runs SQLite, so a statement that never ends would otherwise hold the replica
 * (on the leader: no lease renewal, a failover, and the client's retry holding the next leader).
 *
 * better-sqlite3 exposes neither `sqlite3_interrupt` nor a progress handler, so the deadline lives
 * in a small SQLite extension (native/statement_guard.c, built by `npm run build` with the system C
 * compiler): a watchdog thread calls `sqlite3_interrupt` at the deadline. Client SQL cannot disarm
 * it: each connection's guard takes a random key at open.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type Database from 'better-sqlite3';

/** File name of the built extension, under `dist/native/`. */
export const STATEMENT_GUARD_LIBRARY = 'statement_guard.so';

/**
 * Where the built extension is: `$FLOTILLA_STATEMENT_GUARD`, else `dist/native/` of this tree
 * (this file runs from `dist/libs/storage/src/` when built, from `libs/storage/src/` under jest).
 */
export function statementGuardPath(env: NodeJS.ProcessEnv = process.env): string | null {
  const candidates = [
    env.FLOTILLA_STATEMENT_GUARD,
    path.resolve(__dirname, '../../../native', STATEMENT_GUARD_LIBRARY),
    path.resolve(__dirname, '../../../dist/native', STATEMENT_GUARD_LIBRARY),
  ];
  for (const c of candidates) if (c && fs.existsSync(c)) return c;
  return null;
}

/** Why statement deadlines are off in this process (null while they work): said once at start. */
let unavailable: string | null = null;
export function statementGuardUnavailable(): string | null {
  return unavailable;
}

export class StatementGuard {
  private readonly key = randomBytes(24).toString('base64url');
  private readonly call: Database.Statement;

  private constructor(db: Database.Database) {
    this.call = db.prepare('SELECT flotilla_guard(?, ?)').pluck();
    this.call.get(this.key, 0); // sets the key before any client SQL can run
  }

  /** The guard of `db`, or null (deadlines off, see {@link statementGuardUnavailable}). */
  static attach(db: Database.Database): StatementGuard | null {
    const lib = statementGuardPath();
    if (lib === null) {
      unavailable = `${STATEMENT_GUARD_LIBRARY} not built (npm run build compiles libs/storage/native/statement_guard.c with cc)`;
      return null;
    }
    try {
      db.loadExtension(lib);
    } catch (err) {
      unavailable = `${lib}: ${(err as Error).message}`;
      return null;
    }
    // Loaded but not keyed would leave the function to whoever calls it first: fail the open instead.
    return new StatementGuard(db);
  }

  /** Interrupts whatever statement of this connection runs `ms` from now, until {@link disarm}. */
  arm(ms: number): void {
    this.call.get(this.key, ms);
  }

  /**
   * Takes the deadline back. Past it the watchdog interrupts every few ms until this runs, so the
   * interrupt may land on this very call: it is then made again.
   */
  disarm(): void {
    for (let attempt = 1; ; attempt++) {
      try {
        this.call.get(this.key, 0);
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== 'SQLITE_INTERRUPT' || attempt >= 10) throw err;
      }
    }
  }
}

/**
 * The deadline bounds one request; many at once (each a little under it) would still hold the
 * event loop for their sum, and the lease renewal, a timer, waits for all of them. So the time SQL
 * may take is also counted per turn of the event loop: a timer stamps each turn, and SQL that
 * starts has until the last stamp + the timeout + one tick (so the first request of a turn gets
 * its whole timeout although the stamp is up to a tick old). A request that finds that spent is
 * refused at once, one cut short by it was not too slow itself: both are retryable (503), unlike
 * a request that ran its whole timeout (400).
 */
export const SQL_TURN_TICK_MS = 20;
/** Less than this left of the turn's time: the request is refused without running. */
export const SQL_TURN_MIN_LEFT_MS = 10;
let lastTickMono = 0;
let lastUseMono = 0;
let ticker: NodeJS.Timeout | null = null;

/** Milliseconds the SQL of a request starting now may run (≤ timeoutMs; ≤ 0: none left in this turn). */
export function sqlTimeLeftMs(timeoutMs: number): number {
  const now = performance.now();
  lastUseMono = now;
  if (ticker === null) {
    lastTickMono = now; // the loop was idle: a new turn
    ticker = setInterval(() => {
      lastTickMono = performance.now();
      // Idle for a second: stop stamping (no wake-ups for a replica nobody queries).
      if (lastTickMono - lastUseMono > 1000 && ticker !== null) {
        clearInterval(ticker);
        ticker = null;
      }
    }, SQL_TURN_TICK_MS);
    ticker.unref();
  }
  return Math.min(timeoutMs, lastTickMono + timeoutMs + SQL_TURN_TICK_MS - now);
}

/** True for SQLite's error for a statement stopped by a deadline. */
export function isInterrupt(err: unknown): boolean {
  return (err as { code?: string } | null)?.code === 'SQLITE_INTERRUPT';
}
