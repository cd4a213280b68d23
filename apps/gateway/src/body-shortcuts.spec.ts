import { ArgumentMetadata } from '@nestjs/common';
import { BODY_SHORTCUTS, executeShortcut, queryShortcut } from './body-shortcuts';
import { ExecuteRequestDto, IDEMPOTENCY_KEY_CHARS_MAX, MAX_LAG_MS_MAX, QueryRequestDto, StatementDto, STATEMENTS_MAX } from './dto';
import { BodyValidationPipe } from './validation';

const fullPipe = new BodyValidationPipe();
const fastPipe = new BodyValidationPipe(BODY_SHORTCUTS);

function bodyOf(metatype: ArgumentMetadata['metatype']): ArgumentMetadata {
  return { type: 'body', metatype, data: undefined };
}

/** What a pipe makes of a JSON text: the DTO, or the message of what it threw. */
async function outcome(pipe: BodyValidationPipe, metatype: ArgumentMetadata['metatype'], json: string): Promise<{ dto?: unknown; error?: string }> {
  try {
    return { dto: await pipe.transform(JSON.parse(json), bodyOf(metatype)) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** Classes of the DTO and of its statements, which toEqual does not compare. */
function classesOf(dto: unknown): string[] {
  const d = dto as { constructor: { name: string }; statements?: { constructor: { name: string } }[] };
  return [d.constructor.name, ...(Array.isArray(d.statements) ? d.statements.map((s) => s.constructor.name) : [])];
}

const stmt = (sql: unknown, params?: unknown) => (params === undefined ? { sql } : { sql, params });
const longKey = 'k'.repeat(IDEMPOTENCY_KEY_CHARS_MAX);
/** 256 characters but 512 UTF-16 units: valid for the pipe, too long for the shortcut. */
const astralKey = '😀'.repeat(IDEMPOTENCY_KEY_CHARS_MAX);

const EXECUTE_BODIES: unknown[] = [
  { statements: [stmt('INSERT INTO t(v) VALUES (?)', [1])] },
  { statements: [stmt('INSERT INTO t(v) VALUES (?)', [1, 'a', null, 2.5, { $b: 'AAE=' }, { $i: '9007199254740993' }])], idempotencyKey: 'k-1', durability: 'sync' },
  { statements: [stmt('INSERT INTO t(v) VALUES (:v)', { v: 1, w: { $i: '-5' } }), stmt('DELETE FROM t')], durability: { replicas: 2 } },
  { statements: [stmt('SELECT 1', [])], durability: 'leader', idempotencyKey: longKey },
  { statements: [stmt('SELECT 1')], idempotencyKey: astralKey },
  { statements: [stmt('SELECT 1')], idempotencyKey: longKey + 'k' },
  { statements: Array.from({ length: STATEMENTS_MAX }, () => stmt('SELECT 1')) },
  { statements: Array.from({ length: STATEMENTS_MAX + 1 }, () => stmt('SELECT 1')) },
  {},
  { statements: [] },
  { statements: 'SELECT 1' },
  { statements: [42] },
  { statements: [null] },
  { statements: [[stmt('SELECT 1')]] },
  { statements: [stmt(42)] },
  { statements: [stmt('')] },
  { statements: [stmt(null)] },
  { statements: [{ params: [1] }] },
  { statements: [stmt('SELECT ?', [true])] },
  { statements: [stmt('SELECT ?', null)] },
  { statements: [stmt('SELECT ?', 'x')] },
  { statements: [stmt('SELECT :a', { a: { $x: 1 } })] },
  { statements: [stmt('SELECT :a', { '': 1 })] },
  { statements: [stmt('SELECT :constructor', { constructor: 1 })] },
  { statements: [stmt('SELECT :prototype', { prototype: 1 })] },
  { statements: [{ sql: 'SELECT 1', extra: true }] },
  { statements: [stmt('SELECT 1')], transaction: true },
  { statements: [stmt('SELECT 1')], constructor: 1 },
  { statements: [stmt('SELECT 1')], idempotencyKey: 12 },
  { statements: [stmt('SELECT 1')], idempotencyKey: '' },
  { statements: [stmt('SELECT 1')], idempotencyKey: null },
  { statements: [stmt('SELECT 1')], durability: 'all' },
  { statements: [stmt('SELECT 1')], durability: null },
  { statements: [stmt('SELECT 1')], durability: { replicas: 65 } },
  { statements: [stmt('SELECT 1')], durability: { replicas: 1, x: 1 } },
];

const QUERY_BODIES: unknown[] = [
  { sql: 'SELECT 1' },
  { sql: 'SELECT ?', params: [1, null, { $b: '' }] },
  { sql: 'SELECT :a', params: { a: 'x' }, consistency: 'strong' },
  { sql: 'SELECT 1', consistency: 'any' },
  { sql: 'SELECT 1', consistency: 'read-your-writes', minLsn: '42' },
  { sql: 'SELECT 1', minLsn: '0' },
  { sql: 'SELECT 1', consistency: 'bounded', maxLagMs: 0 },
  { sql: 'SELECT 1', maxLagMs: MAX_LAG_MS_MAX },
  { sql: 'SELECT 1', consistency: 'any', maxLagMs: 10 },
  { sql: 'SELECT 1', minLsn: '1', maxLagMs: 10 },
  { sql: 'SELECT 1', maxLagMs: MAX_LAG_MS_MAX + 1 },
  { sql: 'SELECT 1', maxLagMs: -1 },
  { sql: 'SELECT 1', maxLagMs: 1.5 },
  { sql: 'SELECT 1', maxLagMs: 'soon' },
  { sql: 'SELECT 1', maxLagMs: null },
  { sql: 'SELECT 1', consistency: 'bounded' },
  { sql: 'SELECT 1', consistency: 'eventual' },
  { sql: 'SELECT 1', consistency: null },
  { sql: 'SELECT 1', minLsn: 5 },
  { sql: 'SELECT 1', minLsn: '007' },
  { sql: 'SELECT 1', minLsn: null },
  { sql: 'SELECT 1', minLsn: '4', minEpoch: 2 },
  { sql: 'SELECT 1', minLsn: '4', minEpoch: 0, consistency: 'strong' },
  { sql: 'SELECT 1', minEpoch: 2 },
  { sql: 'SELECT 1', minLsn: '4', minEpoch: -1 },
  { sql: 'SELECT 1', minLsn: '4', minEpoch: 1.5 },
  { sql: 'SELECT 1', minLsn: '4', minEpoch: '2' },
  { sql: 'SELECT 1', minLsn: '4', minEpoch: null },
  { sql: 'SELECT 1', params: [true] },
  { sql: 'SELECT :constructor', params: { constructor: 1 } },
  { sql: '' },
  { sql: 42 },
  { consistency: 'any' },
  { sql: 'SELECT 1', extra: 1 },
  {},
];

describe('body shortcuts', () => {
  it.each(EXECUTE_BODIES.map((b) => [JSON.stringify(b).slice(0, 120), JSON.stringify(b)]))('execute %s: same result as the ValidationPipe', async (_name, json) => {
    const full = await outcome(fullPipe, ExecuteRequestDto, json);
    const fast = await outcome(fastPipe, ExecuteRequestDto, json);
    expect(fast).toEqual(full);
    if (full.dto) expect(classesOf(fast.dto)).toEqual(classesOf(full.dto));
  });

  it.each(QUERY_BODIES.map((b) => [JSON.stringify(b), JSON.stringify(b)]))('query %s: same result as the ValidationPipe', async (_name, json) => {
    const full = await outcome(fullPipe, QueryRequestDto, json);
    const fast = await outcome(fastPipe, QueryRequestDto, json);
    expect(fast).toEqual(full);
    if (full.dto) expect(classesOf(fast.dto)).toEqual(classesOf(full.dto));
  });

  it('treat a __proto__ key (JSON.parse makes it an own key) as the pipe does', async () => {
    for (const json of ['{"statements":[{"sql":"SELECT 1"}],"__proto__":{"x":1}}', '{"statements":[{"sql":"SELECT :a","params":{"__proto__":1,"a":2}}]}']) {
      expect(executeShortcut(JSON.parse(json))).toBeUndefined();
      expect(await outcome(fastPipe, ExecuteRequestDto, json)).toEqual(await outcome(fullPipe, ExecuteRequestDto, json));
    }
  });

  it('take the common bodies themselves and leave the rest to the pipe', () => {
    const write = executeShortcut({ statements: [stmt('INSERT INTO t(v) VALUES (?)', [1])], idempotencyKey: 'k' });
    expect(write).toBeInstanceOf(ExecuteRequestDto);
    expect((write as ExecuteRequestDto).statements[0]).toBeInstanceOf(StatementDto);
    expect(queryShortcut({ sql: 'SELECT 1', minLsn: '3' })).toBeInstanceOf(QueryRequestDto);
    expect(executeShortcut({ statements: [stmt('SELECT ?', [true])] })).toBeUndefined();
    expect(executeShortcut({ statements: [stmt('SELECT 1')], idempotencyKey: astralKey })).toBeUndefined();
    expect(queryShortcut({ sql: 'SELECT 1', consistency: 'bounded' })).toBeUndefined();
    expect(queryShortcut(Object.assign(Object.create({ inherited: 1 }) as object, { sql: 'SELECT 1' }))).toBeUndefined();
  });
});
