import { isReadStatement, leadingKeyword, splitStatements } from './sql-kind';

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
    ["WITH x AS (SELECT replace(name, 'a', 'b') AS n FROM t) SELECT * FROM x", true],
    ['WITH x AS (SELECT 1 AS a) REPLACE INTO t SELECT a FROM x', false],
    ['', false],
  ])('%j → read %s', (sql, read) => {
    expect(isReadStatement(sql)).toBe(read);
  });

  it('finds the leading keyword past comments', () => {
    expect(leadingKeyword('/* x */ -- y\n  insert into t values (1)')).toBe('INSERT');
  });
});

describe('splitStatements', () => {
  it('splits at top-level semicolons only', () => {
    expect(splitStatements("INSERT INTO t VALUES ('a;b'); -- x; y\nUPDATE t SET \"c;d\" = 1; /* ; */ ;")).toEqual([
      "INSERT INTO t VALUES ('a;b')",
      '-- x; y\nUPDATE t SET "c;d" = 1',
    ]);
  });

  it('keeps a single statement whole', () => {
    expect(splitStatements('DELETE FROM t')).toEqual(['DELETE FROM t']);
  });

  it('leaves a trigger definition whole', () => {
    const sql = 'CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET n = n + 1; END;';
    expect(splitStatements(sql)).toEqual([sql]);
  });
});
