/**
 * Request and response bodies of the public REST contract (DESIGN.md "Public contract").
 * Requests are validated once here (class-validator, unknown fields refused); the OpenAPI document
 * at GET /v1/openapi.json is generated from these classes. LSNs are decimal strings.
 */
import { ApiExtraModels, ApiProperty, ApiPropertyOptional, ApiPropertyOptions, getSchemaPath } from '@nestjs/swagger';
import type { SchemaObject } from '@nestjs/swagger/dist/interfaces/open-api-spec.interface';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayNotEmpty,
  IsArray,
  IsDefined,
  IsIn,
  IsInt,
  IsNotEmpty,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  ValidateIf,
  ValidateNested,
} from 'class-validator';
import { ErrorCode, FlotillaError } from '@flotilla/protocol';
import type { Durability, SqlValue } from '@flotilla/protocol';
import { READ_CONSISTENCIES } from '../../../libs/replication/src/cluster-view';
import { IDEMPOTENCY_KEY_CHARS_MAX } from '../../../libs/replication/src/validate';
import type { ReadConsistency } from '../../../libs/replication/src/cluster-view';
import { IsDurability, IsSqlParams } from './validation';

/**
 * Optional: absent is fine, but null is validated like any other value (and refused): a null
 * idempotencyKey, params or bound would otherwise pass here and mean something else further on.
 */
function OptionalNotNull(): PropertyDecorator {
  return ValidateIf((_o, v) => v !== undefined);
}

/** Statements in one write transaction at most. */
export const STATEMENTS_MAX = 1000;
/** Length of an idempotency key at most, in characters (the leader checks the same). */
export { IDEMPOTENCY_KEY_CHARS_MAX };
/** Largest maxLagMs a bounded read may ask for: one hour. */
export const MAX_LAG_MS_MAX = 60 * 60 * 1000;
const REQUIRED = '$property is required';

/** A decimal LSN: a non-negative 64-bit integer without leading zeros. */
export const LSN_PATTERN = /^(0|[1-9][0-9]{0,18})$/;

const SQL_VALUE_SCHEMA: SchemaObject = {
  oneOf: [
    { type: 'number' },
    { type: 'string' },
    { type: 'object', properties: { $b: { type: 'string', format: 'byte' } }, required: ['$b'], additionalProperties: false },
    { type: 'object', properties: { $i: { type: 'string', pattern: '^-?[0-9]{1,19}$' } }, required: ['$i'], additionalProperties: false },
  ],
  nullable: true,
  description: 'null, a number, a string, {"$b": base64 blob} or {"$i": "64-bit integer as decimal"}',
};

const PARAMS_SCHEMA: ApiPropertyOptions = {
  description: 'Positional (array) or named (object) parameters',
  oneOf: [
    { type: 'array', items: SQL_VALUE_SCHEMA },
    { type: 'object', additionalProperties: SQL_VALUE_SCHEMA },
  ],
};

export class StatementDto {
  @ApiProperty({ example: 'INSERT INTO t(x) VALUES (?)', minLength: 1 })
  @IsNotEmpty()
  @IsString()
  @IsDefined({ message: REQUIRED })
  sql!: string;

  @ApiPropertyOptional(PARAMS_SCHEMA)
  @OptionalNotNull()
  @IsSqlParams()
  params?: SqlValue[] | Record<string, SqlValue>;
}

/** POST /v1/execute: one write transaction, all or nothing. */
export class ExecuteRequestDto {
  @ApiProperty({ type: [StatementDto], minItems: 1, maxItems: STATEMENTS_MAX })
  @ValidateNested({ each: true, message: '$property must hold objects {sql, params?}' })
  @Type(() => StatementDto)
  @ArrayMaxSize(STATEMENTS_MAX)
  @ArrayNotEmpty()
  @IsArray()
  @IsDefined({ message: REQUIRED })
  statements!: StatementDto[];

  @ApiPropertyOptional({
    description: 'Retrying with the same key within 24 h never applies the transaction twice (the first answer comes back); the same key with other statements is 409',
    minLength: 1,
    maxLength: IDEMPOTENCY_KEY_CHARS_MAX,
  })
  @OptionalNotNull()
  @MaxLength(IDEMPOTENCY_KEY_CHARS_MAX)
  @IsNotEmpty()
  @IsString()
  idempotencyKey?: string;

  @ApiPropertyOptional({
    description: 'Never less than the cluster default',
    oneOf: [{ type: 'string', enum: ['leader', 'sync'] }, { type: 'object', properties: { replicas: { type: 'integer', minimum: 0, maximum: 64 } }, required: ['replicas'] }],
  })
  @OptionalNotNull()
  @IsDurability()
  durability?: Durability;
}

/** POST /v1/query: one read at a consistency level. */
export class QueryRequestDto {
  @ApiProperty({ example: 'SELECT * FROM t WHERE x = ?' })
  @IsNotEmpty()
  @IsString()
  @IsDefined({ message: REQUIRED })
  sql!: string;

  @ApiPropertyOptional(PARAMS_SCHEMA)
  @OptionalNotNull()
  @IsSqlParams()
  params?: SqlValue[] | Record<string, SqlValue>;

  @ApiPropertyOptional({
    enum: READ_CONSISTENCIES,
    description: 'Default: read-your-writes when minLsn is given, bounded when maxLagMs is given, else any',
  })
  @OptionalNotNull()
  @IsIn(READ_CONSISTENCIES)
  consistency?: ReadConsistency;

  @ApiPropertyOptional({ type: String, pattern: LSN_PATTERN.source, description: 'read-your-writes: the LSN of your last write (decimal string)' })
  @ValidateIf((o: QueryRequestDto) => o.minLsn !== undefined)
  @Matches(LSN_PATTERN, { message: '$property must be a decimal string (the lsn returned by /v1/execute)' })
  @IsString({ message: '$property must be a decimal string (the lsn returned by /v1/execute)' })
  minLsn?: string;

  @ApiPropertyOptional({
    type: 'integer',
    minimum: 0,
    description:
      'With minLsn: the epoch of that write (its reply carried it). A replica whose history has another epoch at minLsn answers 409 STALE_EPOCH: the write was lost in a failover',
  })
  @ValidateIf((o: QueryRequestDto) => o.minEpoch !== undefined)
  @Min(0)
  @IsInt()
  minEpoch?: number;

  @ApiPropertyOptional({ type: 'integer', minimum: 0, maximum: MAX_LAG_MS_MAX, description: 'bounded: largest acceptable replication lag' })
  @ValidateIf((o: QueryRequestDto) => o.maxLagMs !== undefined || o.consistency === 'bounded')
  @Max(MAX_LAG_MS_MAX)
  @Min(0)
  @IsInt()
  @IsDefined({ message: '$property is required when consistency is bounded' })
  maxLagMs?: number;
}

export class ExecResultDto {
  @ApiProperty() changes!: number;
  @ApiProperty({ description: 'decimal string (64-bit rowid)' }) lastInsertRowid!: string;
  @ApiPropertyOptional({ description: 'rows of a statement that returns them (RETURNING)', type: 'array', items: { type: 'object', additionalProperties: true } })
  rows?: Record<string, unknown>[];
}

export class ExecuteResponseDto {
  @ApiProperty({ description: 'LSN of the transaction (decimal string)', example: '42' }) lsn!: string;
  @ApiProperty() epoch!: number;
  @ApiProperty({ type: [ExecResultDto] }) results!: ExecResultDto[];
}

export class QueryResponseDto {
  @ApiProperty({ type: 'array', items: { type: 'object', additionalProperties: SQL_VALUE_SCHEMA } }) rows!: Record<string, SqlValue>[];
  @ApiProperty({ example: 'replica-1' }) servedBy!: string;
  @ApiProperty({ description: 'LSN applied on the serving node when the query ran (decimal string)' }) lsn!: string;
}

export class NodeDto {
  @ApiProperty() name!: string;
  @ApiProperty({ enum: ['leader', 'follower', 'starting', 'seeding'] }) role!: string;
  @ApiProperty() epoch!: number;
  @ApiProperty({ description: 'last LSN in the node log (decimal string)' }) lsn!: string;
  @ApiProperty({ description: 'decimal string' }) appliedLsn!: string;
  @ApiProperty({ description: 'decimal string: highest LSN on the node\'s disk (what failover and semi-sync count)' }) flushedLsn!: string;
  @ApiProperty() lagMs!: number;
  @ApiProperty() sync!: boolean;
  @ApiProperty() healthy!: boolean;
  @ApiProperty() version!: string;
  @ApiProperty() mode!: string;
  @ApiProperty() logFormat!: string;
  @ApiProperty({ type: String, nullable: true }) problem!: string | null;
}

export class LastFailoverDto {
  @ApiProperty({ type: String, nullable: true, description: 'the failed leader' }) from!: string | null;
  @ApiProperty({ description: 'the promoted replica' }) to!: string;
  @ApiProperty() epoch!: number;
  @ApiProperty({ description: 'when the failure was detected, ms since the Unix epoch' }) detectedAt!: number;
  @ApiProperty({ description: 'when the lease was handed over, ms since the Unix epoch' }) promotedAt!: number;
}

/** What the active failover monitor says. */
export class FailoverDto {
  @ApiProperty({ enum: ['ok', 'failing-over', 'no-candidate', 'standby', 'unknown'], description: 'unknown: no active monitor heard from' })
  state!: 'ok' | 'failing-over' | 'no-candidate' | 'standby' | 'unknown';
  @ApiPropertyOptional({ description: 'why, e.g. which replicas are not eligible and why' }) reason?: string;
  @ApiProperty({ type: String, nullable: true, description: 'the active monitor' }) monitor!: string | null;
  @ApiPropertyOptional({ type: LastFailoverDto }) lastFailover?: LastFailoverDto;
}

export class ClusterResponseDto {
  @ApiProperty() cluster!: string;
  @ApiProperty() epoch!: number;
  @ApiProperty({ type: String, nullable: true }) leader!: string | null;
  @ApiProperty({ type: String, nullable: true }) mode!: string | null;
  @ApiProperty({ type: String, nullable: true }) logFormat!: string | null;
  @ApiProperty({ type: [NodeDto] }) nodes!: NodeDto[];
  @ApiProperty({ type: FailoverDto }) failover!: FailoverDto;
}

/** A replica name: a DNS label, as in GET /v1/cluster. */
export const NODE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** POST /v1/admin/switchover: planned leader change, no data loss. */
export class SwitchoverRequestDto {
  @ApiProperty({ example: 'replica-1', description: 'the replica to lead next' })
  @Matches(NODE_NAME, { message: '$property must be a replica name such as replica-1' })
  @IsString()
  @IsDefined({ message: REQUIRED })
  to!: string;
}

/** POST /v1/admin/mode: replication mode at run time (replicated; survives failover and restarts). */
export class ModeRequestDto {
  @ApiPropertyOptional({ enum: ['async', 'semi-sync', 'sync'] })
  @OptionalNotNull()
  @IsIn(['async', 'semi-sync', 'sync'])
  mode?: 'async' | 'semi-sync' | 'sync';

  @ApiPropertyOptional({ minimum: 1, maximum: 64, description: 'followers that must flush a write in semi-sync mode' })
  @OptionalNotNull()
  @IsInt()
  @Min(1)
  @Max(64)
  syncFollowers?: number;

  @ApiPropertyOptional({ enum: ['block', 'degrade'], description: 'what happens when no follower can be synchronous' })
  @OptionalNotNull()
  @IsIn(['block', 'degrade'])
  syncPolicy?: 'block' | 'degrade';

  @ApiPropertyOptional({ minimum: 10, maximum: 600000 })
  @OptionalNotNull()
  @IsInt()
  @Min(10)
  @Max(600_000)
  syncTimeoutMs?: number;
}

export class ModeResponseDto {
  @ApiProperty({ enum: ['async', 'semi-sync', 'sync'] }) mode!: string;
  @ApiProperty() syncFollowers!: number;
  @ApiProperty({ enum: ['block', 'degrade'] }) syncPolicy!: string;
  @ApiProperty() syncTimeoutMs!: number;
  @ApiProperty({ description: 'LSN of the log entry that recorded the change (decimal string)' }) lsn!: string;
}

export class SwitchoverResponseDto {
  @ApiProperty({ example: 'replica-0' }) from!: string;
  @ApiProperty({ example: 'replica-1' }) to!: string;
  @ApiProperty({ description: 'epoch of the new leader' }) epoch!: number;
  @ApiProperty({ description: 'last LSN of the old leader, which the new leader had when it took over' }) lsn!: string;
}

export class DiscardedTransactionDto {
  @ApiProperty({ description: 'the replica that discarded it' }) node!: string;
  @ApiProperty({ description: 'decimal string' }) lsn!: string;
  @ApiProperty() epoch!: number;
  @ApiProperty({ description: 'leader commit time, ms since the Unix epoch' }) ts!: number;
  @ApiProperty({ description: 'when it was undone, ms since the Unix epoch' }) discardedAt!: number;
  @ApiProperty({ type: 'array', items: { type: 'object' }, description: 'row changes (ins/upd/del/ddl) with before-images' }) changes!: unknown[];
  @ApiProperty({ type: 'object', additionalProperties: { type: 'array', items: { type: 'string' } } }) cols!: Record<string, string[]>;
}

export class UnavailableNodeDto {
  @ApiProperty() node!: string;
  @ApiProperty({ example: 'timeout' }) reason!: string;
}

export class DiscardedResponseDto {
  @ApiProperty({ type: [DiscardedTransactionDto], description: 'sorted by lsn' }) discarded!: DiscardedTransactionDto[];
  @ApiProperty({ type: [UnavailableNodeDto], description: 'replicas that did not answer: their quarantine is not listed' }) unavailable!: UnavailableNodeDto[];
}

export class ErrorDto {
  @ApiProperty({ example: 'BAD_REQUEST' }) code!: string;
  @ApiProperty() message!: string;
}

/** The body of every error response. */
@ApiExtraModels(ErrorDto)
export class ErrorResponseDto {
  @ApiProperty({ allOf: [{ $ref: getSchemaPath(ErrorDto) }] }) error!: ErrorDto;
}

/**
 * The consistency of a query: explicit, else implied by minLsn / maxLagMs, else any. Throws
 * BAD_REQUEST when minLsn or maxLagMs contradict the explicit level.
 */
export function consistencyOf(dto: QueryRequestDto): ReadConsistency {
  if (dto.minEpoch !== undefined && dto.minLsn === undefined) {
    throw new FlotillaError(ErrorCode.BAD_REQUEST, 'invalid request: minEpoch goes with minLsn (the lsn and epoch of your write)');
  }
  if (dto.consistency) {
    if (dto.minLsn !== undefined && (dto.consistency === 'any' || dto.consistency === 'bounded')) {
      throw new FlotillaError(ErrorCode.BAD_REQUEST, `invalid request: minLsn applies to consistency read-your-writes (or strong), not ${dto.consistency}`);
    }
    if (dto.maxLagMs !== undefined && dto.consistency !== 'bounded') {
      throw new FlotillaError(ErrorCode.BAD_REQUEST, `invalid request: maxLagMs applies to consistency bounded, not ${dto.consistency}`);
    }
    return dto.consistency;
  }
  if (dto.minLsn !== undefined && dto.maxLagMs !== undefined) {
    throw new FlotillaError(ErrorCode.BAD_REQUEST, 'invalid request: give minLsn (read-your-writes) or maxLagMs (bounded), not both');
  }
  if (dto.minLsn !== undefined) return 'read-your-writes';
  if (dto.maxLagMs !== undefined) return 'bounded';
  return 'any';
}
