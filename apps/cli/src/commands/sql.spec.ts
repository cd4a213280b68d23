import { CliError } from '../gateway-client';
import { formatExecuteReply, formatQueryReply, sqlRequest } from './sql';

describe('sqlRequest', () => {
  it('sends reads to /v1/query with params and consistency', () => {
    expect(sqlRequest('SELECT * FROM t WHERE id = ?', { params: [1], consistency: 'strong' })).toEqual({
      path: '/v1/query',
      body: { sql: 'SELECT * FROM t WHERE id = ?', params: [1], consistency: 'strong' },
    });
  });

  it('sends writes to /v1/execute as one statement', () => {
    expect(sqlRequest('INSERT INTO t VALUES (?)', { params: ['a'] })).toEqual({
      path: '/v1/execute',
      body: { statements: [{ sql: 'INSERT INTO t VALUES (?)', params: ['a'] }] },
    });
  });

  it('runs a script of several statements as one transaction', () => {
    expect(sqlRequest('CREATE TABLE t (a); INSERT INTO t VALUES (1);', {}).body).toEqual({
      statements: [{ sql: 'CREATE TABLE t (a)' }, { sql: 'INSERT INTO t VALUES (1)' }],
    });
    expect(() => sqlRequest('INSERT INTO t VALUES (?); INSERT INTO t VALUES (?)', { params: [1] })).toThrow(/single statement/);
  });

  it('obeys --read / --write', () => {
    expect(sqlRequest('SELECT 1', { force: 'write' }).path).toBe('/v1/execute');
    expect(sqlRequest('INSERT INTO t VALUES (1)', { force: 'read' }).path).toBe('/v1/query');
  });

  it('refuses a consistency level on a write', () => {
    expect(() => sqlRequest('DELETE FROM t', { consistency: 'strong' })).toThrow(CliError);
  });
});

describe('bounded and read-your-writes reads', () => {
  it('sends maxLagMs and minLsn with a read, and refuses them with a write', () => {
    expect(sqlRequest('SELECT 1', { consistency: 'bounded', maxLagMs: 250, minLsn: '7' })).toEqual({
      path: '/v1/query',
      body: { sql: 'SELECT 1', consistency: 'bounded', maxLagMs: 250, minLsn: '7' },
    });
    expect(() => sqlRequest('DELETE FROM t', { minLsn: '7' })).toThrow(/apply to reads only/);
  });

  it('sends minEpoch with minLsn (the write it names must be in the history), and refuses it with a write', () => {
    expect(sqlRequest('SELECT 1', { minLsn: '7', minEpoch: 3 })).toEqual({ path: '/v1/query', body: { sql: 'SELECT 1', minLsn: '7', minEpoch: 3 } });
    expect(() => sqlRequest('DELETE FROM t', { minEpoch: 3 })).toThrow(/apply to reads only/);
  });
});

describe('reply formatting', () => {
  it('prints rows and where they came from', () => {
    expect(formatQueryReply({ rows: [{ n: 1 }], servedBy: 'replica-1', lsn: '7' })).toEqual(['n', '-', '1', '(1 row, served by replica-1 at lsn 7)']);
    expect(formatQueryReply({ rows: [], servedBy: 'replica-0', lsn: '7' })).toEqual(['(0 rows, served by replica-0 at lsn 7)']);
  });

  it('prints the outcome of a write', () => {
    expect(formatExecuteReply({ lsn: '8', epoch: 2, results: [{ changes: 1, lastInsertRowid: { $i: '5' } }] })).toEqual([
      'OK, 1 row changed, last insert rowid 5 (lsn 8, epoch 2)',
    ]);
    expect(formatExecuteReply({ lsn: '9', epoch: 2, results: [{ changes: 0, lastInsertRowid: 5 }] })).toEqual(['OK, 0 rows changed (lsn 9, epoch 2)']);
  });

  it('prints the rows a write returns (RETURNING)', () => {
    expect(formatExecuteReply({ lsn: '10', epoch: 2, results: [{ changes: 1, lastInsertRowid: 3, rows: [{ id: 3 }] }] })).toEqual([
      'id', '--', ' 3', 'OK, 1 row changed, last insert rowid 3 (lsn 10, epoch 2)',
    ]);
  });
});
