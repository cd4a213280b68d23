/**
 * Conversion between JSON-safe {@link SqlValue}s on the wire and the values better-sqlite3
 * binds and returns (number, bigint, string, Buffer, null).
 */
import type { SqlValue } from './messages';

export type NativeValue = null | number | bigint | string | Buffer;

/** Wire → native, for binding parameters. Throws TypeError on anything else. */
export function toNative(v: SqlValue): NativeValue {
  if (v === null || typeof v === 'string') return v;
  // A JSON integer is an SQL INTEGER (better-sqlite3 would bind every number as REAL).
  // Beyond 2^53 a double is integral whatever it meant: from there on it binds as a REAL.
  if (typeof v === 'number') return Number.isSafeInteger(v) ? BigInt(v) : v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'object' && !Array.isArray(v)) {
    if ('$b' in v && typeof v.$b === 'string' && Object.keys(v).length === 1) return Buffer.from(v.$b, 'base64');
    if ('$i' in v && typeof v.$i === 'string' && /^-?[0-9]{1,19}$/.test(v.$i) && Object.keys(v).length === 1) return BigInt(v.$i);
  }
  throw new TypeError(`not a SQL value: ${JSON.stringify(v)} (use null, a number, a string, {"$b": base64} or {"$i": "decimal"})`);
}

/** Native → wire, for rows returned to clients. */
export function toWire(v: unknown): SqlValue {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number' || typeof v === 'string') return v;
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : { $i: v.toString() };
  if (Buffer.isBuffer(v)) return { $b: v.toString('base64') };
  if (v instanceof Uint8Array) return { $b: Buffer.from(v).toString('base64') };
  throw new TypeError(`unexpected SQL value of type ${typeof v}`);
}

/** Binds wire params (positional or named) as better-sqlite3 expects them. */
export function paramsToNative(params: SqlValue[] | Record<string, SqlValue> | undefined): NativeValue[] | Record<string, NativeValue>[] {
  if (params === undefined) return [];
  if (Array.isArray(params)) return params.map(toNative);
  const named: Record<string, NativeValue> = {};
  for (const [k, v] of Object.entries(params)) named[k.replace(/^[:@$]/, '')] = toNative(v);
  return [named];
}
