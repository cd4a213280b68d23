/**
 * Boundary validation of request bodies: custom class-validator constraints for SQL values and
 * durability, and the ValidationPipe that turns every problem into one BAD_REQUEST naming the
 * fields (`statements[0].sql must be a string`).
 */
import { ArgumentMetadata, ValidationError, ValidationPipe } from '@nestjs/common';
import { registerDecorator, ValidationArguments, ValidationOptions } from 'class-validator';
import { ErrorCode, FlotillaError } from '@flotilla/protocol';

/** Parameters of one statement at most (SQLite's default SQLITE_MAX_VARIABLE_NUMBER). */
export const PARAMS_MAX = 32_766;
/** Problems listed in one error message at most; the rest are counted. */
export const PROBLEMS_LISTED_MAX = 10;

const SQL_VALUE_HELP = 'null, a number, a string, {"$b": base64} or {"$i": "decimal"}';
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const DECIMAL_INT64 = /^-?[0-9]{1,19}$/;

/** Why `v` is not a wire SqlValue, or undefined when it is one. */
export function sqlValueProblem(v: unknown): string | undefined {
  if (v === null || typeof v === 'string') return undefined;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return 'is not a finite number';
    // JSON numbers are doubles: an integer beyond 2^53 has already lost digits when parsed
    // (9007199254740993 reads as ...992). From 2^63 on it can only be a REAL, and binds as one.
    if (Number.isInteger(v) && !Number.isSafeInteger(v) && Math.abs(v) < 2 ** 63) {
      return 'is an integer beyond 2^53, which JSON numbers cannot hold exactly: send {"$i": "<decimal>"} for an INTEGER, or a number with a fraction for a REAL';
    }
    return undefined;
  }
  if (typeof v === 'object' && !Array.isArray(v)) {
    const keys = Object.keys(v);
    const o = v as Record<string, unknown>;
    if (keys.length === 1 && keys[0] === '$b') return typeof o.$b === 'string' && BASE64.test(o.$b) ? undefined : 'has a $b that is not base64';
    if (keys.length === 1 && keys[0] === '$i') {
      if (typeof o.$i !== 'string' || !DECIMAL_INT64.test(o.$i)) return 'has a $i that is not a decimal integer string';
      const n = BigInt(o.$i);
      return n >= -(2n ** 63n) && n < 2n ** 63n ? undefined : 'has a $i outside the 64-bit range';
    }
  }
  return `is ${describeValue(v)}, not ${SQL_VALUE_HELP}`;
}

/** A short rendering of a bad value for an error message: never the whole of a huge or deeply nested one. */
function describeValue(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? typeof v;
  } catch {
    s = Array.isArray(v) ? `an array of ${v.length}` : typeof v; // too deep to render
  }
  return s.length > 80 ? `${s.slice(0, 80)}...` : s;
}

/**
 * Why `v` is not statement params (an array or object of SqlValues), or undefined. The reason is a
 * suffix for the field name: `[2] is true, not ...`, `.name is ...` or ` must be ...`.
 */
export function paramsProblem(v: unknown): string | undefined {
  if (Array.isArray(v)) {
    if (v.length > PARAMS_MAX) return ` has ${v.length} values, more than ${PARAMS_MAX}`;
    for (let i = 0; i < v.length; i++) {
      const p = sqlValueProblem(v[i]);
      if (p) return `[${i}] ${p}`;
    }
    return undefined;
  }
  if (typeof v === 'object' && v !== null) {
    const entries = Object.entries(v);
    if (entries.length > PARAMS_MAX) return ` has ${entries.length} values, more than ${PARAMS_MAX}`;
    for (const [k, value] of entries) {
      if (k === '') return ' has an empty parameter name';
      const p = sqlValueProblem(value);
      if (p) return `.${k} ${p}`;
    }
    return undefined;
  }
  return ` must be an array or an object of SQL values (${SQL_VALUE_HELP})`;
}

/** Statement parameters: positional array or named object of wire SqlValues. */
export function IsSqlParams(options?: ValidationOptions): PropertyDecorator {
  return (target, propertyName) =>
    registerDecorator({
      name: 'isSqlParams',
      target: target.constructor,
      propertyName: propertyName as string,
      options,
      validator: {
        validate: (value: unknown) => paramsProblem(value) === undefined,
        defaultMessage: (args?: ValidationArguments) => `$property${paramsProblem(args?.value) ?? ' is invalid'}`,
      },
    });
}

/** Why `v` is not a Durability (`'leader' | 'sync' | {replicas: n}`), or undefined. */
export function durabilityProblem(v: unknown): string | undefined {
  if (v === 'leader' || v === 'sync') return undefined;
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const keys = Object.keys(v);
    const n = (v as { replicas?: unknown }).replicas;
    if (keys.length === 1 && keys[0] === 'replicas' && typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 64) return undefined;
  }
  return 'must be "leader", "sync" or {"replicas": <integer 0..64>}';
}

/** Write durability: `'leader' | 'sync' | {replicas: n}`. */
export function IsDurability(options?: ValidationOptions): PropertyDecorator {
  return (target, propertyName) =>
    registerDecorator({
      name: 'isDurability',
      target: target.constructor,
      propertyName: propertyName as string,
      options,
      validator: {
        validate: (value: unknown) => durabilityProblem(value) === undefined,
        defaultMessage: (args?: ValidationArguments) => `$property ${durabilityProblem(args?.value) ?? 'is invalid'}`,
      },
    });
}

/** Flattens nested validation errors into messages that start with the full path of the field. */
export function describeValidationErrors(errors: ValidationError[], parent = ''): string[] {
  const out: string[] = [];
  for (const e of errors) {
    const path = parent === '' ? e.property : /^\d+$/.test(e.property) ? `${parent}[${e.property}]` : `${parent}.${e.property}`;
    for (const [constraint, message] of Object.entries(e.constraints ?? {})) {
      if (constraint === 'nestedValidation') out.push(`${path} must be an object`);
      else if (message.startsWith(`property ${e.property} `)) out.push(`property ${path}${message.slice(`property ${e.property}`.length)}`);
      else if (message.startsWith(`${e.property} `) || message.startsWith(`${e.property}[`) || message.startsWith(`${e.property}.`)) {
        out.push(path + message.slice(e.property.length));
      } else out.push(`${path}: ${message}`);
    }
    if (e.children && e.children.length > 0) out.push(...describeValidationErrors(e.children, path));
  }
  return out;
}

/** The BAD_REQUEST error for a list of validation errors (the first few problems, then a count). */
export function validationFailure(errors: ValidationError[]): FlotillaError {
  const problems = describeValidationErrors(errors);
  const listed = problems.slice(0, PROBLEMS_LISTED_MAX).join('; ');
  const more = problems.length > PROBLEMS_LISTED_MAX ? `; and ${problems.length - PROBLEMS_LISTED_MAX} more` : '';
  return new FlotillaError(ErrorCode.BAD_REQUEST, `invalid request: ${listed || 'rejected'}${more}`);
}

/**
 * A cheaper judge of one DTO class: the instance the pipe would return for `value` when `value` is
 * certainly valid, else undefined (the pipe then judges it).
 */
export type BodyShortcut = (value: unknown) => object | undefined;

/**
 * ValidationPipe for request bodies: unknown fields are refused (whitelist + forbidNonWhitelisted),
 * the body must be a JSON object, and every failure is a FlotillaError BAD_REQUEST. `shortcuts`
 * (by DTO class) may accept valid bodies without class-transformer and class-validator.
 */
export class BodyValidationPipe extends ValidationPipe {
  constructor(private readonly shortcuts: ReadonlyMap<unknown, BodyShortcut> = new Map()) {
    super({
      whitelist: true,
      forbidNonWhitelisted: true,
      forbidUnknownValues: true,
      // One message per field, from its most basic check (decorators are listed most basic last).
      stopAtFirstError: true,
      transform: true,
      validationError: { target: false, value: true },
      exceptionFactory: (errors) => validationFailure(errors),
    });
  }

  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    if (metadata.type === 'body' && (typeof value !== 'object' || value === null || Array.isArray(value))) {
      throw new FlotillaError(ErrorCode.BAD_REQUEST, 'invalid request: the body must be a JSON object (Content-Type: application/json)');
    }
    const shortcut = metadata.type === 'body' ? this.shortcuts.get(metadata.metatype) : undefined;
    const dto = shortcut?.(value);
    if (dto !== undefined) return dto;
    return super.transform(value, metadata);
  }
}
