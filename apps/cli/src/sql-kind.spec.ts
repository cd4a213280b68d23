import { isReadStatement, leadingKeyword } from './sql-kind';

describe('isReadStatement', () => {
  it.each([
    ['SELECT 1', true],
    ['  select * from t', true],
    ['-- comment\nSELECT 1', true],
    ['/* a */ (SELECT 1)', true],
    ['WITH x AS (SELECT 1) SELECT * FROM x', true],
    ['PRAGMA table_info(t)', true],
    ['EXPLAIN QUERY PLAN SELECT 1', true],
    ['VALUES (1, 2)', true],
    ['INSERT INTO t VALUES (1)', false],
    ['update t set a = 1', false],
    ['DELETE FROM t', false],
    ['CREATE TABLE t (a)', false],
    ['WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x', false],
    ["WITH x AS (SELECT 'insert into') SELECT * FROM x", true],
    ['', false],
  ])('%j → read %s', (sql, read) => {
    expect(isReadStatement(sql)).toBe(read);
  });

  it('finds the leading keyword past comments', () => {
    expect(leadingKeyword('/* x */ -- y\n  insert into t values (1)')).toBe('INSERT');
  });
});
