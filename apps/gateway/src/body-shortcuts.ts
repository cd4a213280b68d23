/**
 * Shortcuts past class-transformer and class-validator for the two hot request bodies
 * (POST /v1/execute, /v1/query): a plain check that accepts only bodies the ValidationPipe would
 * certainly accept, and builds the DTO it would build. Anything else — an error, an unusual but
 * valid shape (null for an optional field, a named parameter called `constructor`...) — gets
 * `undefined`, and the full pipe judges it, so every error message stays the pipe's.
 *
 * The DTO classes stay the schema (and the OpenAPI source); a unit spec runs the same bodies
 * through both paths and requires the same result.
 */
import { READ_CONSISTENCIES } from '../../../libs/replication/src/cluster-view';
import { ExecuteRequestDto, IDEMPOTENCY_KEY_CHARS_MAX, LSN_PATTERN, MAX_LAG_MS_MAX, QueryRequestDto, StatementDto, STATEMENTS_MAX } from './dto';
import { BodyShortcut, durabilityProblem, paramsProblem } from './validation';

const EXECUTE_KEYS: ReadonlySet<string> = new Set(['statements', 'idempotencyKey', 'durability']);
const STATEMENT_KEYS: ReadonlySet<string> = new Set(['sql', 'params']);
const QUERY_KEYS: ReadonlySet<string> = new Set(['sql', 'params', 'consistency', 'minLsn', 'minEpoch', 'maxLagMs']);
/** Keys the ValidationPipe strips from every object (prototype pollution): left to it. */
const STRIPPED_KEYS: ReadonlySet<string> = new Set(['__proto__', 'prototype', 'constructor']);
const CONSISTENCIES: ReadonlySet<unknown> = new Set(READ_CONSISTENCIES);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}

function hasOnlyKeys(o: Record<string, unknown>, allowed: ReadonlySet<string>): boolean {
  for (const k in o) if (!allowed.has(k)) return false;
  return true;
}

/** Params the pipe accepts as they are: absent, or valid and without a name it would strip. */
function plainParams(v: unknown): boolean {
  if (v === undefined) return true;
  if (paramsProblem(v) !== undefined) return false;
  // Valid values are null, numbers, strings, {$b} and {$i}: only names of named params can be stripped.
  if (!Array.isArray(v)) for (const k of Object.keys(v as object)) if (STRIPPED_KEYS.has(k)) return false;
  return true;
}

/** A key of at most IDEMPOTENCY_KEY_CHARS_MAX UTF-16 units has at most as many characters. */
function plainIdempotencyKey(v: unknown): boolean {
  return v === undefined || (typeof v === 'string' && v.length > 0 && v.length <= IDEMPOTENCY_KEY_CHARS_MAX);
}

/** The ExecuteRequestDto the ValidationPipe would make of `value`, or undefined: ask the pipe. */
export const executeShortcut: BodyShortcut = (value) => {
  if (!isPlainObject(value) || !hasOnlyKeys(value, EXECUTE_KEYS)) return undefined;
  const statements = value.statements;
  if (!Array.isArray(statements) || statements.length === 0 || statements.length > STATEMENTS_MAX) return undefined;
  if (!plainIdempotencyKey(value.idempotencyKey)) return undefined;
  if (value.durability !== undefined && durabilityProblem(value.durability) !== undefined) return undefined;
  const dtos: StatementDto[] = new Array(statements.length);
  for (let i = 0; i < statements.length; i++) {
    const s: unknown = statements[i];
    if (!isPlainObject(s) || !hasOnlyKeys(s, STATEMENT_KEYS)) return undefined;
    if (typeof s.sql !== 'string' || s.sql === '' || !plainParams(s.params)) return undefined;
    dtos[i] = Object.assign(new StatementDto(), s);
  }
  return Object.assign(new ExecuteRequestDto(), value, { statements: dtos });
};

/** The QueryRequestDto the ValidationPipe would make of `value`, or undefined: ask the pipe. */
export const queryShortcut: BodyShortcut = (value) => {
  if (!isPlainObject(value) || !hasOnlyKeys(value, QUERY_KEYS)) return undefined;
  if (typeof value.sql !== 'string' || value.sql === '' || !plainParams(value.params)) return undefined;
  const { consistency, minLsn, minEpoch, maxLagMs } = value;
  if (consistency !== undefined && !CONSISTENCIES.has(consistency)) return undefined;
  if (minEpoch !== undefined && !(Number.isInteger(minEpoch) && (minEpoch as number) >= 0)) return undefined;
  if (minLsn !== undefined && (typeof minLsn !== 'string' || !LSN_PATTERN.test(minLsn))) return undefined;
  if (maxLagMs === undefined ? consistency === 'bounded' : !(Number.isInteger(maxLagMs) && (maxLagMs as number) >= 0 && (maxLagMs as number) <= MAX_LAG_MS_MAX)) {
    return undefined;
  }
  return Object.assign(new QueryRequestDto(), value);
};

/** The shortcuts by DTO class, for {@link BodyValidationPipe}. */
export const BODY_SHORTCUTS: ReadonlyMap<unknown, BodyShortcut> = new Map<unknown, BodyShortcut>([
  [ExecuteRequestDto, executeShortcut],
  [QueryRequestDto, queryShortcut],
]);
