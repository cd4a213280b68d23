/**
 * Values inside log payloads (see capture.ts for the encoding) back to what better-sqlite3 binds,
 * keeping SQLite's storage class: integers bind as BigInt (INTEGER), other numbers as REAL.
 */
export type BindValue = null | number | bigint | string | Buffer;

export function logValueToBind(v: unknown): BindValue {
  if (v === null) return null;
  // A plain JSON integer is within 2^53 (larger INTEGERs come as $i): anything else was a REAL
  // (entries from before big REALs were marked $r).
  if (typeof v === 'number') return Number.isSafeInteger(v) ? BigInt(v) : v;
  if (typeof v === 'string') return v;
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (typeof o.$x === 'string') return Buffer.from(o.$x, 'hex');
    if (typeof o.$i === 'string') return BigInt(o.$i);
    if (typeof o.$r === 'number') return o.$r;
    if (o.$r === '-0') return -0; // JSON has no negative zero (see capture.ts)
  }
  throw new Error(`bad value in log payload: ${JSON.stringify(v)}`);
}
