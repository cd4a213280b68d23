/** Boundary checks of requests that reach a replica over NATS (the gateway checks too: trust nobody). */
import { ProtocolError, QueryRequest, Statement, WriteRequest } from '@flotilla/protocol';

/** Most statements in one write request. */
export const STATEMENTS_PER_REQUEST_MAX = 1000;
/** Longest idempotency key. */
export const IDEMPOTENCY_KEY_CHARS_MAX = 256;

function checkParams(p: unknown, where: string): void {
  if (p === undefined) return;
  if (typeof p !== 'object' || p === null) throw new ProtocolError(`${where}.params must be an array or an object`);
}

function checkStatement(s: unknown, where: string): Statement {
  if (typeof s !== 'object' || s === null) throw new ProtocolError(`${where} must be an object`);
  const st = s as Record<string, unknown>;
  if (typeof st.sql !== 'string' || st.sql.trim() === '') throw new ProtocolError(`${where}.sql must be a non-empty string`);
  checkParams(st.params, where);
  return st as unknown as Statement;
}

export function validateWriteRequest(m: Record<string, unknown>): WriteRequest {
  if (m.type !== 'write') throw new ProtocolError(`expected write, got ${String(m.type)}`);
  if (!Array.isArray(m.statements) || m.statements.length === 0) throw new ProtocolError('statements must be a non-empty array');
  if (m.statements.length > STATEMENTS_PER_REQUEST_MAX) throw new ProtocolError(`at most ${STATEMENTS_PER_REQUEST_MAX} statements per request`);
  m.statements.forEach((s, i) => checkStatement(s, `statements[${i}]`));
  // Characters as the gateway's validation counts them (code points: an emoji is one, not two).
  if (m.idempotencyKey !== undefined && (typeof m.idempotencyKey !== 'string' || m.idempotencyKey.length === 0 || [...m.idempotencyKey].length > IDEMPOTENCY_KEY_CHARS_MAX)) {
    throw new ProtocolError(`idempotencyKey must be a string of 1 to ${IDEMPOTENCY_KEY_CHARS_MAX} characters`);
  }
  const d = m.durability;
  if (d !== undefined && d !== 'leader' && d !== 'sync') {
    const r = (d as { replicas?: unknown } | null)?.replicas;
    if (typeof d !== 'object' || d === null || Object.keys(d).length !== 1 || typeof r !== 'number' || !Number.isInteger(r) || r < 0 || r > 64) {
      throw new ProtocolError('durability must be "leader", "sync" or {replicas: 0..64}');
    }
  }
  return m as unknown as WriteRequest;
}

export function validateQueryRequest(m: Record<string, unknown>): QueryRequest {
  if (m.type !== 'query') throw new ProtocolError(`expected query, got ${String(m.type)}`);
  if (typeof m.sql !== 'string' || m.sql.trim() === '') throw new ProtocolError('sql must be a non-empty string');
  checkParams(m.params, 'query');
  if (m.maxLagMs !== undefined && (typeof m.maxLagMs !== 'number' || m.maxLagMs < 0)) throw new ProtocolError('maxLagMs must be a number >= 0');
  if (m.waitMs !== undefined && (typeof m.waitMs !== 'number' || m.waitMs < 0 || m.waitMs > 60_000)) throw new ProtocolError('waitMs must be 0..60000');
  if (m.minEpoch !== undefined && !(Number.isSafeInteger(m.minEpoch) && (m.minEpoch as number) >= 0 && m.minLsn !== undefined)) {
    throw new ProtocolError('minEpoch must be an integer >= 0, given with minLsn');
  }
  return m as unknown as QueryRequest;
}
