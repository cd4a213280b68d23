import { ArgumentMetadata } from '@nestjs/common';
import { ErrorCode, FlotillaError } from '@flotilla/protocol';
import { consistencyOf, ExecuteRequestDto, QueryRequestDto, STATEMENTS_MAX, SwitchoverRequestDto } from './dto';
import { BodyValidationPipe, durabilityProblem, paramsProblem, sqlValueProblem } from './validation';

const pipe = new BodyValidationPipe();

function bodyOf(metatype: ArgumentMetadata['metatype']): ArgumentMetadata {
  return { type: 'body', metatype, data: undefined };
}

async function execute(value: unknown): Promise<ExecuteRequestDto> {
  return (await pipe.transform(value, bodyOf(ExecuteRequestDto))) as ExecuteRequestDto;
}

async function query(value: unknown): Promise<QueryRequestDto> {
  return (await pipe.transform(value, bodyOf(QueryRequestDto))) as QueryRequestDto;
}

/** The BAD_REQUEST message a body is refused with (fails the test if it is accepted). */
async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(FlotillaError);
    expect((err as FlotillaError).code).toBe(ErrorCode.BAD_REQUEST);
    return (err as FlotillaError).message;
  }
  throw new Error('the body was accepted');
}

describe('ExecuteRequestDto', () => {
  it('accepts statements with positional, named and typed params, a key and a durability', async () => {
    const body = {
      statements: [
        { sql: 'INSERT INTO t VALUES (?, ?, ?, ?, ?)', params: [null, 1.5, 'x', { $b: 'AAE=' }, { $i: '9223372036854775807' }] },
        { sql: 'UPDATE t SET a = :a', params: { ':a': -3 } },
        { sql: 'DELETE FROM t' },
      ],
      idempotencyKey: 'k-1',
      durability: { replicas: 2 },
    };
    const dto = await execute(body);
    expect(dto).toBeInstanceOf(ExecuteRequestDto);
    expect(dto.statements).toHaveLength(3);
    expect(dto.statements[0].params).toEqual(body.statements[0].params);
    expect(dto.statements[1].params).toEqual({ ':a': -3 });
    expect(dto.durability).toEqual({ replicas: 2 });
  });

  it('names a missing statements field', async () => {
    expect(await refusal(execute({}))).toBe('invalid request: statements is required');
  });

  it('refuses a body that is not a JSON object', async () => {
    for (const body of [undefined, null, [], [{ statements: [] }], 'x', 3]) {
      expect(await refusal(execute(body))).toMatch(/body must be a JSON object/);
    }
  });

  it('refuses an empty or oversized statements list', async () => {
    expect(await refusal(execute({ statements: [] }))).toMatch(/statements should not be empty/);
    expect(await refusal(execute({ statements: 'SELECT 1' }))).toMatch(/statements must be an array/);
    const many = Array.from({ length: STATEMENTS_MAX + 1 }, () => ({ sql: 'SELECT 1' }));
    expect(await refusal(execute({ statements: many }))).toMatch(/statements must contain no more than 1000 elements/);
  });

  it('names the path of a wrong-typed nested field', async () => {
    expect(await refusal(execute({ statements: [{ sql: 'SELECT 1' }, { sql: 7 }] }))).toBe('invalid request: statements[1].sql must be a string');
    expect(await refusal(execute({ statements: [{ params: [] }] }))).toBe('invalid request: statements[0].sql is required');
    expect(await refusal(execute({ statements: ['SELECT 1'] }))).toMatch(/statements\[0\] must be an object/);
  });

  it('refuses unknown fields, at the top and inside statements', async () => {
    expect(await refusal(execute({ statements: [{ sql: 'SELECT 1' }], extra: 1 }))).toMatch(/property extra should not exist/);
    expect(await refusal(execute({ statements: [{ sql: 'SELECT 1', bind: [] }] }))).toMatch(/property statements\[0\]\.bind should not exist/);
  });

  it('refuses null for an optional field, naming it (absent is the way to leave one out)', async () => {
    expect(await refusal(execute({ statements: [{ sql: 'x' }], idempotencyKey: null }))).toMatch(/idempotencyKey/);
    expect(await refusal(execute({ statements: [{ sql: 'x', params: null }] }))).toMatch(/statements\[0\]\.params/);
    expect(await refusal(execute({ statements: [{ sql: 'x' }], durability: null }))).toMatch(/durability/);
    expect(await refusal(query({ sql: 'x', consistency: 'bounded', maxLagMs: null }))).toMatch(/maxLagMs/);
    await expect(execute({ statements: [{ sql: 'x' }] })).resolves.toBeDefined();
  });

  it('refuses params values that are not SQL values, naming the position', async () => {
    expect(await refusal(execute({ statements: [{ sql: 'x', params: [1, true] }] }))).toMatch(/statements\[0\]\.params\[1\] is true, not null/);
    expect(await refusal(execute({ statements: [{ sql: 'x', params: { a: [1] } }] }))).toMatch(/statements\[0\]\.params\.a is \[1\]/);
    expect(await refusal(execute({ statements: [{ sql: 'x', params: 'a' }] }))).toMatch(/statements\[0\]\.params must be an array or an object/);
  });

  it('refuses a bad idempotency key or durability', async () => {
    expect(await refusal(execute({ statements: [{ sql: 'x' }], idempotencyKey: 5 }))).toMatch(/idempotencyKey must be a string/);
    expect(await refusal(execute({ statements: [{ sql: 'x' }], idempotencyKey: '' }))).toMatch(/idempotencyKey should not be empty/);
    expect(await refusal(execute({ statements: [{ sql: 'x' }], durability: 'fsync' }))).toMatch(/durability must be "leader", "sync" or/);
  });
});

describe('QueryRequestDto', () => {
  it('accepts every consistency level with its parameters', async () => {
    expect(consistencyOf(await query({ sql: 'SELECT 1' }))).toBe('any');
    expect(consistencyOf(await query({ sql: 'SELECT 1', consistency: 'strong' }))).toBe('strong');
    expect(consistencyOf(await query({ sql: 'SELECT 1', minLsn: '12' }))).toBe('read-your-writes');
    expect(consistencyOf(await query({ sql: 'SELECT 1', consistency: 'read-your-writes', minLsn: '9223372036854775807' }))).toBe('read-your-writes');
    expect(consistencyOf(await query({ sql: 'SELECT 1', consistency: 'bounded', maxLagMs: 100 }))).toBe('bounded');
    expect(consistencyOf(await query({ sql: 'SELECT 1', maxLagMs: 0 }))).toBe('bounded');
  });

  it('names the bad field', async () => {
    expect(await refusal(query({}))).toBe('invalid request: sql is required');
    expect(await refusal(query({ sql: ['SELECT 1'] }))).toBe('invalid request: sql must be a string');
    expect(await refusal(query({ sql: 'SELECT 1', consistency: 'eventual' }))).toMatch(/^invalid request: consistency must be one of the following values: any, strong, read-your-writes, bounded$/);
    expect(await refusal(query({ sql: 'SELECT 1', consistency: 'bounded' }))).toBe('invalid request: maxLagMs is required when consistency is bounded');
    expect(await refusal(query({ sql: 'SELECT 1', maxLagMs: 1.5 }))).toBe('invalid request: maxLagMs must be an integer number');
    expect(await refusal(query({ sql: 'SELECT 1', maxLagMs: -1 }))).toBe('invalid request: maxLagMs must not be less than 0');
  });

  it('accepts minLsn only as a decimal string', async () => {
    for (const minLsn of [12, '012', '-1', '1e3', ' 1', '99999999999999999999']) {
      expect(await refusal(query({ sql: 'SELECT 1', minLsn }))).toBe('invalid request: minLsn must be a decimal string (the lsn returned by /v1/execute)');
    }
  });

  it('refuses minLsn or maxLagMs that contradict the consistency', async () => {
    await expect(query({ sql: 'SELECT 1', consistency: 'any', minLsn: '3' }).then(consistencyOf)).rejects.toThrow(/minLsn applies to consistency read-your-writes/);
    await expect(query({ sql: 'SELECT 1', consistency: 'strong', maxLagMs: 3 }).then(consistencyOf)).rejects.toThrow(/maxLagMs applies to consistency bounded/);
    await expect(query({ sql: 'SELECT 1', minLsn: '3', maxLagMs: 3 }).then(consistencyOf)).rejects.toThrow(/not both/);
  });
});

describe('SQL value checks', () => {
  it('accepts exactly null, finite numbers, strings, {$b} and {$i}', () => {
    for (const v of [null, 0, -1.5, '', 'x', { $b: '' }, { $b: 'AAE=' }, { $i: '-9223372036854775808' }]) {
      expect(sqlValueProblem(v)).toBeUndefined();
    }
    for (const v of [true, undefined, [], {}, { $b: 1 }, { $b: 'a', x: 1 }, { $i: '1.5' }, { $i: '9223372036854775808' }, { $i: 5 }]) {
      expect(sqlValueProblem(v)).toEqual(expect.any(String));
    }
  });

  it('reports the first bad param with its position', () => {
    expect(paramsProblem([1, 'a', null])).toBeUndefined();
    expect(paramsProblem({ a: 1, b: { $i: '2' } })).toBeUndefined();
    expect(paramsProblem([1, false])).toMatch(/^\[1\] is false/);
    expect(paramsProblem({ a: 1, b: {} })).toMatch(/^\.b is \{\}/);
    expect(paramsProblem({ '': 1 })).toMatch(/empty parameter name/);
  });

  it('knows the durability forms', () => {
    for (const d of ['leader', 'sync', { replicas: 0 }, { replicas: 3 }]) expect(durabilityProblem(d)).toBeUndefined();
    for (const d of ['all', 2, { replicas: -1 }, { replicas: 1.5 }, { replicas: 2, x: 1 }, null]) expect(durabilityProblem(d)).toEqual(expect.any(String));
  });
});

describe('SwitchoverRequestDto', () => {
  const switchover = async (value: unknown) => (await pipe.transform(value, bodyOf(SwitchoverRequestDto))) as SwitchoverRequestDto;

  it('accepts a replica name', async () => {
    expect((await switchover({ to: 'replica-1' })).to).toBe('replica-1');
  });

  it('refuses a missing, mistyped or malformed target, and unknown fields', async () => {
    expect(await refusal(switchover({}))).toBe('invalid request: to is required');
    expect(await refusal(switchover({ to: 3 }))).toMatch(/to must be a string/);
    expect(await refusal(switchover({ to: 'Replica 1' }))).toMatch(/to must be a replica name such as replica-1/);
    expect(await refusal(switchover({ to: 'replica-1', force: true }))).toMatch(/force/);
  });
});
