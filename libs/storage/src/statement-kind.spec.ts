import { classifyStatement, refusedPragma, StatementKind, touchesInternal, writesSqliteSequence } from './statement-kind';

const kind = (sql: string) => classifyStatement(sql).kind;

test('transaction control is refused however it is written (a trailing semicolon, comments, empty statements)', () => {
  for (const sql of ['COMMIT', 'COMMIT;', 'end;', ' ;; rollback ;', '/* x */ COMMIT', '-- note\nBEGIN', 'SAVEPOINT a;', 'release a']) {
    expect([sql, kind(sql)]).toEqual([sql, StatementKind.REFUSED]);
  }
});

test('DDL is recognised through comments between its words, and refused outside the main schema', () => {
  expect(kind(';CREATE TABLE x(a)')).toBe(StatementKind.DDL);
  expect(kind('CREATE/**/TABLE x(a)')).toBe(StatementKind.DDL);
  expect(kind('create unique index if not exists main.i on t(a)')).toBe(StatementKind.DDL);
  expect(kind('CREATE TABLE temp.t(a)')).toBe(StatementKind.REFUSED);
  expect(kind('CREATE TABLE IF NOT EXISTS "temp".t(a)')).toBe(StatementKind.REFUSED);
  expect(kind('CREATE TEMP TABLE t(a)')).toBe(StatementKind.REFUSED);
  expect(kind('PRAGMA/**/recursive_triggers=OFF')).toBe(StatementKind.REFUSED);
  expect(kind('/* a */ -- b\n ATTACH ? AS x')).toBe(StatementKind.REFUSED);
});

test('reads and writes keep their kinds; unknown words go to SQLite for its syntax error', () => {
  expect(kind('SELECT 1;')).toBe(StatementKind.READ);
  expect(kind("INSERT INTO t VALUES ('COMMIT')")).toBe(StatementKind.DML);
  expect(kind('WITH x AS (SELECT 1) DELETE FROM t')).toBe(StatementKind.DML);
  expect(kind('UPDAT t SET a = 1')).toBe(StatementKind.READ);
});

test('internal tables are refused by name, quoted or not; the same text in a string literal is data', () => {
  expect(touchesInternal('DELETE FROM _flotilla_log')).toBe(true);
  expect(touchesInternal('SELECT * FROM "_FLOTILLA_idem"')).toBe(true);
  expect(touchesInternal('SELECT * FROM main.[_flotilla_meta]')).toBe(true);
  expect(touchesInternal("INSERT INTO notes VALUES ('see _flotilla_log')")).toBe(false);
  // SQLite takes a single-quoted string as a table name where one is expected.
  for (const sql of ["SELECT payload FROM '_flotilla_log'", "UPDATE '_flotilla_meta' SET value = 999", "INSERT INTO '_flotilla_epochs' VALUES (9, 9)", "SELECT * FROM t JOIN '_flotilla_idem' ON 1", "DELETE FROM main.'_flotilla_log'"]) {
    expect([sql, touchesInternal(sql)]).toEqual([sql, true]);
  }
  expect(touchesInternal("INSERT INTO notes VALUES ('_flotilla is a name')")).toBe(false);
  expect(touchesInternal('SELECT 1')).toBe(false);
});

test('writes to sqlite_sequence (not replicated) are recognised however written; reads of it are not writes', () => {
  for (const sql of ['DELETE FROM sqlite_sequence', "UPDATE sqlite_sequence SET seq = 1000 WHERE name = 't'", 'update or replace main.sqlite_sequence set seq = 1', 'INSERT INTO "sqlite_sequence" VALUES (\'t\', 5)', 'WITH x AS (SELECT 1) DELETE FROM [SQLITE_SEQUENCE]']) {
    expect([sql, writesSqliteSequence(sql)]).toEqual([sql, true]);
  }
  for (const sql of ['SELECT seq FROM sqlite_sequence', "INSERT INTO t SELECT seq FROM sqlite_sequence WHERE name = 'x'", "INSERT INTO notes VALUES ('DELETE FROM sqlite_sequence')"]) {
    expect([sql, writesSqliteSequence(sql)]).toEqual([sql, false]);
  }
});

test('a query may run the PRAGMAs that describe the schema, not those that set anything or tell the data directory', () => {
  for (const sql of ['PRAGMA table_info(t)', 'pragma main.index_list("t")', 'PRAGMA foreign_key_list(t)', 'PRAGMA user_version', 'PRAGMA integrity_check']) {
    expect([sql, refusedPragma(sql)]).toEqual([sql, null]);
  }
  for (const sql of ['PRAGMA busy_timeout = 2147483647', 'PRAGMA hard_heap_limit=1', 'PRAGMA mmap_size(268435456)', 'PRAGMA database_list', 'PRAGMA user_version = 5', '/* x */ PRAGMA main.journal_size_limit=1']) {
    expect([sql, refusedPragma(sql)]).toEqual([sql, expect.stringMatching(/is not allowed here/)]);
  }
  expect(refusedPragma('SELECT 1')).toBeNull();
});
