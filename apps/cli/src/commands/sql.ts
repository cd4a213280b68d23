import { CliError, callGateway } from '../gateway-client';
import { Io } from '../io';
import { isReadStatement, splitStatements } from '../sql-kind';
import { columnsOf, formatTable } from '../table';

export interface SqlOptions {
  gateway: string;
  json: boolean;
  /** Query parameters: a JSON array (positional) or object (named). */
  params?: unknown[] | Record<string, unknown>;
  consistency?: string;
  /** For `bounded`: the largest lag the serving replica may have. */
  maxLagMs?: number;
  /** For `read-your-writes` (and monotonic reads): the LSN the answer must reflect at least. */
  minLsn?: string;
  /** With minLsn: the epoch of that write (the server refuses a history without it). */
  minEpoch?: number;
  /** Force the endpoint instead of guessing it from the leading keyword. */
  force?: 'read' | 'write';
}

interface ExecuteReply {
  lsn: string;
  epoch: number;
  results: { changes: number; lastInsertRowid: unknown; rows?: Record<string, unknown>[] }[];
}

interface QueryReply {
  rows: Record<string, unknown>[];
  servedBy: string;
  lsn: string;
}

/** The HTTP request `flotilla sql` sends for `sql`. */
export function sqlRequest(sql: string, options: Pick<SqlOptions, 'params' | 'consistency' | 'force' | 'maxLagMs' | 'minLsn' | 'minEpoch'>): { path: string; body: Record<string, unknown> } {
  const read = options.force ? options.force === 'read' : isReadStatement(sql);
  if (read) {
    const body: Record<string, unknown> = { sql };
    if (options.params !== undefined) body.params = options.params;
    if (options.consistency) body.consistency = options.consistency;
    // Passed as given: the gateway says which consistency needs or refuses which.
    if (options.maxLagMs !== undefined) body.maxLagMs = options.maxLagMs;
    if (options.minLsn !== undefined) body.minLsn = options.minLsn;
    if (options.minEpoch !== undefined) body.minEpoch = options.minEpoch;
    return { path: '/v1/query', body };
  }
  if (options.consistency || options.maxLagMs !== undefined || options.minLsn !== undefined || options.minEpoch !== undefined) {
    throw new CliError('BAD_REQUEST', '--consistency, --max-lag-ms, --min-lsn and --min-epoch apply to reads only');
  }
  const pieces = splitStatements(sql);
  if (pieces.length > 1 && options.params !== undefined) {
    throw new CliError('BAD_REQUEST', '--params needs a single statement (the script has ' + pieces.length + ')');
  }
  const statements = pieces.map((piece) => {
    const statement: Record<string, unknown> = { sql: piece };
    if (options.params !== undefined) statement.params = options.params;
    return statement;
  });
  return { path: '/v1/execute', body: { statements } };
}

/** Lines printed for a query answer. */
export function formatQueryReply(reply: QueryReply): string[] {
  const rows = reply.rows ?? [];
  const count = `(${rows.length} row${rows.length === 1 ? '' : 's'}, served by ${reply.servedBy} at lsn ${reply.lsn})`;
  if (rows.length === 0) return [count];
  return [...formatTable(columnsOf(rows), rows), count];
}

/** Lines printed for a write answer. */
export function formatExecuteReply(reply: ExecuteReply): string[] {
  return (reply.results ?? []).flatMap((r) => {
    // SQLite keeps the connection's last rowid across statements: only meaningful when rows changed.
    const rowid = r.changes > 0 && r.lastInsertRowid !== undefined && r.lastInsertRowid !== null ? `, last insert rowid ${formatRowid(r.lastInsertRowid)}` : '';
    const line = `OK, ${r.changes} row${r.changes === 1 ? '' : 's'} changed${rowid} (lsn ${reply.lsn}, epoch ${reply.epoch})`;
    // A statement with RETURNING answers rows too.
    return r.rows?.length ? [...formatTable(columnsOf(r.rows), r.rows), line] : [line];
  });
}

function formatRowid(value: unknown): string {
  if (typeof value === 'object' && value !== null && typeof (value as { $i?: unknown }).$i === 'string') return (value as { $i: string }).$i;
  return String(value);
}

/**
 * `flotilla sql "<SQL>"`: a write goes to /v1/execute (several statements separated by `;` run as
 * one transaction), a read to /v1/query; prints the result.
 */
export async function runSql(sql: string, options: SqlOptions, io: Io): Promise<number> {
  if (sql.trim() === '') throw new CliError('BAD_REQUEST', 'empty SQL statement');
  const request = sqlRequest(sql, options);
  if (request.path === '/v1/query') {
    const reply = await callGateway<QueryReply>(options.gateway, 'POST', request.path, request.body);
    if (options.json) io.out(JSON.stringify(reply, null, 2));
    else for (const line of formatQueryReply(reply)) io.out(line);
  } else {
    const reply = await callGateway<ExecuteReply>(options.gateway, 'POST', request.path, request.body);
    if (options.json) io.out(JSON.stringify(reply, null, 2));
    else for (const line of formatExecuteReply(reply)) io.out(line);
  }
  return 0;
}
