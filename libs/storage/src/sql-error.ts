/**
 * Maps what SQLite and better-sqlite3 throw for a client's statement to a wire error code.
 * Only errors caused by the request are mapped; anything else (I/O, full disk) is INTERNAL.
 */
import { ErrorCode, FlotillaError } from '@flotilla/protocol';
import { CAPTURE_BYTES_MAX, CAPTURE_LIMIT_MESSAGE, InvalidTextError } from './capture';

export function toClientError(err: unknown, where: string): FlotillaError {
  if (err instanceof FlotillaError) return err;
  const e = err as { code?: string; message?: string; name?: string };
  const msg = e?.message ?? String(err);
  const code = e?.code ?? '';
  if (e?.name === 'TypeError' || e?.name === 'RangeError') {
    return new FlotillaError(ErrorCode.BAD_REQUEST, `${where}: ${msg}`, { cause: err });
  }
  if (err instanceof InvalidTextError) return new FlotillaError(ErrorCode.BAD_REQUEST, `${where}: ${msg}`, { cause: err });
  if (msg.includes(CAPTURE_LIMIT_MESSAGE)) {
    return new FlotillaError(ErrorCode.PAYLOAD_TOO_LARGE, `${where}: the transaction changes more than ${CAPTURE_BYTES_MAX} bytes of rows, too much for one replication message; split it into smaller requests`, { cause: err });
  }
  if (code.startsWith('SQLITE_CONSTRAINT')) return new FlotillaError(ErrorCode.CONSTRAINT, `${where}: ${msg}`, { cause: err });
  if (/no such table/i.test(msg)) return new FlotillaError(ErrorCode.NO_SUCH_TABLE, `${where}: ${msg}`, { cause: err });
  if (code === 'SQLITE_READONLY') return new FlotillaError(ErrorCode.WRITE_IN_QUERY, `${where}: ${msg}`, { cause: err });
  if (code === 'SQLITE_ERROR' || code === 'SQLITE_RANGE' || code === 'SQLITE_MISMATCH' || code === 'SQLITE_TOOBIG') {
    return new FlotillaError(ErrorCode.SQL_ERROR, `${where}: ${msg}`, { cause: err });
  }
  if (/more than one statement|statement is empty/i.test(msg)) {
    return new FlotillaError(ErrorCode.SQL_ERROR, `${where}: ${msg}`, { cause: err });
  }
  return new FlotillaError(ErrorCode.INTERNAL, `${where}: ${msg}`, { cause: err });
}
